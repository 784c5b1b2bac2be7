package main

import (
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/delivery"
	"github.com/hjbroker/hjbroker/broker/queue"
	"github.com/hjbroker/hjbroker/broker/queue/redisq"
	"github.com/hjbroker/hjbroker/broker/queue/storeq"
	"github.com/hjbroker/hjbroker/broker/store"
)

// defaultRedisPrefix is where the broker keeps its queue keys in Redis unless
// HJB_REDIS_PREFIX says otherwise.
const defaultRedisPrefix = "hjb:q:"

func newReplayCmd() *cobra.Command {
	var dataDir, endpoint, deliveryID string
	cmd := &cobra.Command{
		Use:   "replay --endpoint ID | --delivery ID [--data-dir DIR]",
		Short: "Send dead-lettered deliveries again: one delivery, or every dead letter of an endpoint",
		Long: `Move dead letters back to their queue so that the running broker delivers them again,
and mark them pending in the delivery log. The store is the embedded one in --data-dir, or
PostgreSQL when HJB_STORE_URL is set; the queue is Redis when HJB_REDIS_URL is set (keys under
HJB_REDIS_PREFIX, default "hjb:q:"), the embedded queue on the store otherwise — the same as
the broker being served.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (endpoint == "") == (deliveryID == "") {
				return fmt.Errorf("give exactly one of --endpoint and --delivery")
			}
			ctx := cmd.Context()
			st, err := store.Open(ctx, os.Getenv("HJB_STORE_URL"), dataDir, store.Options{MaxConns: 2,
				Migrations: app.Migrations()})
			if err != nil {
				return err
			}
			defer st.Close()
			var q queue.Queue = storeq.New(st)
			if u := os.Getenv("HJB_REDIS_URL"); u != "" {
				opts, err := redis.ParseURL(u)
				if err != nil {
					return fmt.Errorf("HJB_REDIS_URL: %w", err)
				}
				client := redis.NewClient(opts)
				defer client.Close()
				prefix := os.Getenv("HJB_REDIS_PREFIX")
				if prefix == "" {
					prefix = defaultRedisPrefix
				}
				q = redisq.New(client, prefix)
			}
			defer q.Close()
			admin := delivery.NewAdmin(delivery.AdminOptions{Queue: q, Log: delivery.NewLog(st, nil)})
			if deliveryID != "" {
				if err := admin.ReplayDelivery(ctx, deliveryID); err != nil {
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "replayed delivery %s\n", deliveryID)
				return err
			}
			n, err := admin.ReplayEndpoint(ctx, endpoint)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "replayed %d dead letter(s) of endpoint %s\n", n, endpoint)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./data", "directory of the embedded store")
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "replay every dead letter of this endpoint")
	cmd.Flags().StringVar(&deliveryID, "delivery", "", "replay this dead delivery")
	return cmd
}
