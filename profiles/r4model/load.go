package r4model

import (
	"fmt"
	"sort"
	"strings"

	anp "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

const (
	sdPrefix         = "http://hl7.org/fhir/StructureDefinition/"
	anyMessage       = "google.protobuf.Any"
	referenceMessage = "google.fhir.r4.core.Reference"
)

// Load builds the R4 model from the compiled-in proto descriptors. It takes a few
// milliseconds; build it once and share it.
func Load() *Model {
	b := &builder{
		m:      &Model{types: map[string]*Type{}},
		byDesc: map[protoreflect.FullName]*Type{},
	}
	b.build()
	return b.m
}

type builder struct {
	m      *Model
	byDesc map[protoreflect.FullName]*Type
	// containedName is the full name of the ContainedResource wrapper, which stands for
	// "any resource" wherever it appears (Bundle.entry.resource, Parameters.parameter.resource).
	containedName protoreflect.FullName
	pending       []pendingType
}

type pendingType struct {
	t  *Type
	md protoreflect.MessageDescriptor
}

func (b *builder) build() {
	contained := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor()
	b.containedName = contained.FullName()

	// Abstract roots first so every reference to them resolves to the same value.
	resource := b.add(&Type{Name: "Resource", Kind: Resource, Abstract: true, URL: sdPrefix + "Resource"})
	domain := b.add(&Type{Name: "DomainResource", Kind: Resource, Abstract: true, BaseName: "Resource", URL: sdPrefix + "DomainResource"})

	dt := dtpb.File_proto_google_fhir_proto_r4_core_datatypes_proto
	for i := 0; i < dt.Messages().Len(); i++ {
		b.typeOf(dt.Messages().Get(i), "")
	}
	oneof := contained.Fields()
	for i := 0; i < oneof.Len(); i++ {
		t := b.typeOf(oneof.Get(i).Message(), "")
		if t != nil && t.Kind == Resource {
			b.m.resources = append(b.m.resources, t.Name)
		}
	}
	// Filling elements can discover further (backbone) types, so drain until stable.
	for len(b.pending) > 0 {
		p := b.pending[0]
		b.pending = b.pending[1:]
		b.fill(p.t, p.md)
	}
	sort.Strings(b.m.resources)

	b.abstractElements(resource, domain)
	for _, t := range b.m.types {
		b.setBase(t)
	}
	for _, t := range b.m.types {
		t.index()
	}
}

func (b *builder) add(t *Type) *Type {
	if old, ok := b.m.types[t.Name]; ok {
		return old
	}
	b.m.types[t.Name] = t
	return t
}

func (b *builder) lookupName(name string) *Type { return b.m.types[name] }

// typeOf returns the Type a message stands for, creating it on first sight. path names a
// backbone message after the element that declares it.
func (b *builder) typeOf(md protoreflect.MessageDescriptor, path string) *Type {
	if t, ok := b.byDesc[md.FullName()]; ok {
		return t
	}
	if md.FullName() == anyMessage || md.FullName() == b.containedName {
		return b.lookupName("Resource")
	}
	opts := md.Options()
	kind := proto.GetExtension(opts, anp.E_StructureDefinitionKind).(anp.StructureDefinitionKindValue)
	url := proto.GetExtension(opts, anp.E_FhirStructureDefinitionUrl).(string)
	bases := proto.GetExtension(opts, anp.E_FhirProfileBase).([]string)

	var t *Type
	switch kind {
	case anp.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE:
		name := sdName(url)
		if name == "" && len(bases) > 0 {
			// Value-set bound codes are generated as enum wrappers profiled on code.
			name = sdName(bases[0])
		}
		if name == "" {
			return nil // internal helper messages such as ReferenceId
		}
		t = b.lookupName(name)
		if t == nil {
			t = b.add(&Type{Name: name, Kind: Primitive, URL: sdPrefix + name})
			if sdName(url) == name {
				b.pending = append(b.pending, pendingType{t, md})
			}
		}
	case anp.StructureDefinitionKindValue_KIND_COMPLEX_TYPE, anp.StructureDefinitionKindValue_KIND_RESOURCE:
		k := Complex
		if kind == anp.StructureDefinitionKindValue_KIND_RESOURCE {
			k = Resource
		}
		name := sdName(url)
		if name == "" && len(bases) > 0 {
			// Non-FHIR profiles (e.g. CodingWithFixedCode) behave as their base type.
			if bt, ok := b.byBaseURL(bases[0]); ok {
				b.byDesc[md.FullName()] = bt
				return bt
			}
		}
		if name == "" {
			return nil
		}
		t = b.add(&Type{Name: name, Kind: k, URL: url})
		if len(bases) > 0 {
			t.BaseName = sdName(bases[0])
			t.Profile = true
		}
		b.pending = append(b.pending, pendingType{t, md})
	default:
		if path == "" {
			return nil
		}
		t = b.add(&Type{Name: path, Kind: Backbone})
		b.pending = append(b.pending, pendingType{t, md})
	}
	b.byDesc[md.FullName()] = t
	return t
}

func (b *builder) byBaseURL(url string) (*Type, bool) {
	name := sdName(url)
	if name == "" {
		return nil, false
	}
	if t := b.lookupName(name); t != nil {
		return t, true
	}
	return nil, false
}

// fill creates the elements of a struct-like type from its message fields.
func (b *builder) fill(t *Type, md protoreflect.MessageDescriptor) {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() != protoreflect.MessageKind {
			continue // primitive value fields (value, value_us, precision, ...)
		}
		if f.ContainingOneof() != nil {
			// Reference's oneof spells "reference" several ways; FHIR JSON has only the
			// string form.
			if md.FullName() != referenceMessage || f.JSONName() != "reference" {
				continue
			}
		}
		e := &Element{Name: f.JSONName(), List: f.Cardinality() == protoreflect.Repeated}
		if req, ok := proto.GetExtension(f.Options(), anp.E_ValidationRequirement).(anp.Requirement); ok && req == anp.Requirement_REQUIRED_BY_FHIR {
			e.Min = 1
		}
		fm := f.Message()
		if proto.GetExtension(fm.Options(), anp.E_IsChoiceType).(bool) {
			e.Choice = true
			e.Path = t.Name + "." + e.Name + "[x]"
			choices := fm.Fields()
			for j := 0; j < choices.Len(); j++ {
				cf := choices.Get(j)
				ct := b.typeOf(cf.Message(), "")
				if ct == nil {
					continue
				}
				code := refCode(ct)
				e.Types = append(e.Types, TypeRef{Code: code, Suffix: ChoiceSuffix(code), Type: ct})
				e.TargetTypes = appendUnique(e.TargetTypes, refTargets(cf)...)
			}
		} else {
			e.Path = t.Name + "." + e.Name
			ft := b.typeOf(fm, e.Path)
			if ft == nil {
				continue
			}
			e.Types = []TypeRef{{Code: refCode(ft), Type: ft}}
			e.TargetTypes = refTargets(f)
			if ft.Kind == Primitive {
				e.Binding = proto.GetExtension(fm.Options(), anp.E_FhirValuesetUrl).(string)
			}
		}
		if len(e.Types) == 0 {
			panic(fmt.Sprintf("r4model: element %s has no usable type", e.Path))
		}
		t.Elements = append(t.Elements, e)
	}
}

// abstractElements gives Resource and DomainResource the elements every concrete resource
// of that kind shares.
func (b *builder) abstractElements(resource, domain *Type) {
	var all, dom []*Type
	for _, n := range b.m.resources {
		t := b.m.types[n]
		all = append(all, t)
		if hasElement(t, "text") {
			dom = append(dom, t)
		}
	}
	resource.Elements = commonElements(resource.Name, all)
	domain.Elements = commonElements(domain.Name, dom)
}

func commonElements(owner string, ts []*Type) []*Element {
	if len(ts) == 0 {
		return nil
	}
	var out []*Element
	for _, e := range ts[0].Elements {
		shared := true
		for _, t := range ts[1:] {
			if !hasElement(t, e.Name) {
				shared = false
				break
			}
		}
		if shared {
			c := *e
			c.Path = owner + "." + e.Name
			out = append(out, &c)
		}
	}
	return out
}

func (b *builder) setBase(t *Type) {
	switch {
	case t.Name == "Resource" || t.Name == "Element":
		t.BaseName = ""
		t.Abstract = true
	case t.Name == "BackboneElement":
		t.BaseName = "Element"
		t.Abstract = true
	case t.Kind == Primitive:
		t.BaseName = primitiveBase(t.Name)
	case t.Kind == Resource && t.BaseName == "":
		if hasElement(t, "text") {
			t.BaseName = "DomainResource"
		} else {
			t.BaseName = "Resource"
		}
	case t.BaseName != "":
		// declared profile base (SimpleQuantity, MoneyQuantity)
	case hasElement(t, "modifierExtension"):
		t.BaseName = "BackboneElement"
	case t.Kind == Complex && t.Name != "Quantity" && sameElements(t, b.m.types["Quantity"]):
		// Age, Count, Distance and Duration are Quantity with extra rules.
		t.BaseName = "Quantity"
	default:
		t.BaseName = "Element"
	}
	if t.BaseName != "" {
		t.base = b.m.types[t.BaseName]
		if t.base == nil {
			panic("r4model: unknown base type " + t.BaseName + " of " + t.Name)
		}
	}
}

func (t *Type) index() {
	t.byName = make(map[string]*Element, len(t.Elements))
	t.byJSON = make(map[string]Match, len(t.Elements))
	for _, e := range t.Elements {
		t.byName[e.Name] = e
		for _, r := range e.Types {
			t.byJSON[e.JSONName(r)] = Match{Element: e, Type: r}
		}
	}
}

func refCode(t *Type) string {
	if t.Kind == Backbone {
		return "BackboneElement"
	}
	if t.Profile {
		return t.BaseName
	}
	return t.Name
}

func refTargets(f protoreflect.FieldDescriptor) []string {
	v, _ := proto.GetExtension(f.Options(), anp.E_ValidReferenceType).([]string)
	if len(v) == 0 {
		return nil
	}
	return append([]string(nil), v...)
}

func sdName(url string) string {
	if !strings.HasPrefix(url, sdPrefix) {
		return ""
	}
	return url[len(sdPrefix):]
}

func hasElement(t *Type, name string) bool {
	for _, e := range t.Elements {
		if e.Name == name {
			return true
		}
	}
	return false
}

func sameElements(a, b *Type) bool {
	if a == nil || b == nil || len(a.Elements) != len(b.Elements) {
		return false
	}
	for i := range a.Elements {
		if a.Elements[i].Name != b.Elements[i].Name {
			return false
		}
	}
	return true
}

func appendUnique(dst []string, vs ...string) []string {
	for _, v := range vs {
		found := false
		for _, d := range dst {
			if d == v {
				found = true
				break
			}
		}
		if !found {
			dst = append(dst, v)
		}
	}
	return dst
}
