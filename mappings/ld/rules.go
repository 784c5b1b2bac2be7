package ld

// The extraction rules, as data. A flag rule fires on the first answer to any of its linkIds
// that matches; the screening and assessment Questionnaires share linkIds where they ask the
// same question, so one rule serves both.

const (
	snomedYes = "373066001"
)

// flagRule raises a Flag (UK Core Flag, BaRS flag category) from an answer.
type flagRule struct {
	linkIDs []string
	when    func(answer) bool
	// category is a BaRS flag category: SG safeguarding, RA reasonable adjustment, API
	// additional patient information.
	category              string
	system, code, display string
	text                  string
	// detail names a free-text item appended to the Flag's text.
	detail string
	// labels are v3-ActCode sensitivity labels put in meta.security.
	labels []string
}

var flagCategoryDisplay = map[string]string{"SG": "Safeguarding", "RA": "Reasonable adjustment", "API": "Additional patient information"}

func yesAnswer(a answer) bool { return a.is(SystemSNOMED, snomedYes) }

func trueAnswer(a answer) bool { return a.boolean() }

func riskAtLeastMedium(a answer) bool {
	return a.is(SystemRisk, "medium") || a.is(SystemRisk, "high")
}

func yesOrRisk(a answer) bool { return yesAnswer(a) || riskAtLeastMedium(a) }

var flagRules = []flagRule{
	{linkIDs: []string{"concerns.immediate-risk"}, when: trueAnswer, category: "SG", system: SystemSafeguarding, code: "U",
		display: "Unspecified", text: "Immediate risk to the person or others identified", detail: "concerns.immediate-risk-detail"},
	{linkIDs: []string{"mh.self-harm", "mh.self-harm-risk"}, when: yesOrRisk, category: "SG", system: SystemSafeguarding, code: "401206008",
		display: "At risk of deliberate self harm", text: "At risk of self-harm"},
	{linkIDs: []string{"mh.suicidal-ideation", "mh.suicide-risk"}, when: yesOrRisk, category: "SG", system: SystemSNOMED, code: "6471006",
		display: "Suicidal thoughts", text: "At risk of suicide"},
	{linkIDs: []string{"safeguarding.adult-concern"}, when: yesAnswer, category: "SG", system: SystemSafeguarding, code: "766561000000109",
		display: "Adult safeguarding concern", text: "Adult safeguarding concern"},
	{linkIDs: []string{"trauma.domestic-abuse"}, when: yesAnswer, category: "SG", system: SystemSafeguarding, code: "707087005",
		display: "At risk of domestic violence", text: "Experience of domestic abuse", labels: []string{"SDV"}},
	{linkIDs: []string{"trauma.sexual-abuse"}, when: yesAnswer, category: "SG", system: SystemDomain, code: "trauma-abuse",
		display: "Trauma, including domestic or sexual abuse", text: "Experience of sexual abuse", labels: []string{"SDV"}},
	{linkIDs: []string{"specific.looked-after"}, when: yesAnswer, category: "SG", system: SystemDomain, code: "young-person",
		display: "Young person", text: "Looked-after young person"},
	{linkIDs: []string{"neuro.learning-disability"}, when: yesAnswer, category: "RA", system: SystemSNOMED, code: "110359009",
		display: "Intellectual disability", text: "Learning disability: reasonable adjustments needed", detail: "neuro.adjustments"},
	{linkIDs: []string{"neuro.autism"}, when: yesAnswer, category: "RA", system: SystemSNOMED, code: "408856003",
		display: "Autistic disorder", text: "Autism: reasonable adjustments needed", detail: "neuro.adjustments"},
	{linkIDs: []string{"neuro.adhd"}, when: yesAnswer, category: "RA", system: SystemSNOMED, code: "406506008",
		display: "Attention deficit hyperactivity disorder", text: "ADHD: reasonable adjustments needed", detail: "neuro.adjustments"},
	{linkIDs: []string{"neuro.slcn"}, when: yesAnswer, category: "RA", system: SystemDomain, code: "speech-language-communication",
		display: "Speech, language and communication needs", text: "Speech, language or communication needs", detail: "neuro.adjustments"},
	{linkIDs: []string{"substance.drug-use"}, when: yesAnswer, category: "API", system: SystemDomain, code: "substance-misuse",
		display: "Substance misuse", text: "Illicit drug use or misuse of medication", labels: []string{"SUD"}},
	{linkIDs: []string{"housing.status"}, when: func(a answer) bool { return a.is(SystemSNOMED, "32911000") }, category: "API",
		system: SystemSNOMED, code: "32911000", display: "Homeless", text: "Homeless"},
	{linkIDs: []string{"housing.status"}, when: func(a answer) bool { return a.is(SystemHousing, "at-risk") }, category: "API",
		system: SystemDomain, code: "housing", display: "Housing or accommodation", text: "At risk of losing accommodation"},
	{linkIDs: []string{"finance.debt"}, when: yesAnswer, category: "API", system: SystemDomain, code: "finance-debt",
		display: "Financial difficulty or debt", text: "Financial difficulty or debt"},
	{linkIDs: []string{"veteran.status"}, when: yesAnswer, category: "API", system: SystemDomain, code: "veteran",
		display: "Armed forces veteran", text: "Armed forces veteran"},
	{linkIDs: []string{"gambling.problem"}, when: yesAnswer, category: "API", system: SystemDomain, code: "gambling",
		display: "Gambling", text: "Gambling causing problems"},
	{linkIDs: []string{"physical.concern"}, when: yesAnswer, category: "API", system: SystemDomain, code: "physical-health",
		display: "Physical health", text: "Physical health concern", detail: "physical.detail"},
	{linkIDs: []string{"specific.under-18"}, when: trueAnswer, category: "API", system: SystemDomain, code: "young-person",
		display: "Young person", text: "Young person (under 18)"},
	{linkIDs: []string{"specific.pregnant"}, when: yesAnswer, category: "API", system: SystemDomain, code: "woman",
		display: "Woman with specific needs", text: "Pregnant or recently given birth"},
}

// SystemHousing codes accommodation status answers (homelessness itself is SNOMED 32911000).
const SystemHousing = BaseURL + "/CodeSystem/ld-housing-status"

// riskRule records an assessed risk level as an Observation.
type riskRule struct {
	linkID, code, display string
}

var riskRules = []riskRule{
	{linkID: "mh.self-harm-risk", code: "self-harm-risk", display: "Risk of self-harm"},
	{linkID: "mh.suicide-risk", code: "suicide-risk", display: "Risk of suicide"},
}

// pathwayLabels are the sensitivity labels a referral on the pathway carries, so that its
// ServiceRequest is disclosed only where that kind of information may go.
var pathwayLabels = map[string][]string{
	"mental-health":    {"PSY"},
	"substance-misuse": {"SUD"},
	"alcohol":          {"ETHUD"},
	"domestic-abuse":   {"SDV"},
}
