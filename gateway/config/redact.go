package config

import (
	"reflect"
	"time"

	"gopkg.in/yaml.v3"
)

// Redacted returns the config as plain values (maps, lists, strings, numbers) keyed by the
// file's own names, ready for JSON, with every field tagged secret:"true" replaced by
// "[redacted]", and every filter's config and vm_config too unless admin.show_filter_config
// is set: they are free-form, and often carry keys and tokens that no tag can mark. The
// admin listener's /config shows this.
func (c *Config) Redacted() any {
	show := c.Admin != nil && c.Admin.ShowFilterConfig
	return redactor{showFilterConfig: show}.plain(reflect.ValueOf(c).Elem())
}

// RouteView is Redacted for one route.
func (r *Route) RouteView() any { return redactor{}.plain(reflect.ValueOf(r).Elem()) }

// redacted stands in for a value that is not shown.
const redacted = "[redacted]"

var (
	durationType = reflect.TypeFor[time.Duration]()
	nodeType     = reflect.TypeFor[yaml.Node]()
	filterType   = reflect.TypeFor[Filter]()
	endpointType = reflect.TypeFor[Endpoint]()
)

// filterConfigFields are the fields of Filter that show_filter_config shows.
var filterConfigFields = map[string]bool{"Config": true, "VMConfig": true}

// redactor turns a config value into plain values, leaving out what is not to be shown.
type redactor struct {
	showFilterConfig bool
}

func (rd redactor) plain(v reflect.Value) any {
	switch v.Type() {
	case durationType:
		return time.Duration(v.Int()).String()
	case nodeType:
		var out any
		n := v.Interface().(yaml.Node)
		if err := n.Decode(&out); err != nil {
			return nil
		}
		return out
	case endpointType:
		if e := v.Interface().(Endpoint); e.Metadata == nil {
			return e.Address // as it was most likely written
		}
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return rd.plain(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := f.Tag.Get("yaml")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fv := v.Field(i)
			if fv.IsZero() {
				continue
			}
			if f.Tag.Get("secret") == "true" || t == filterType && filterConfigFields[f.Name] && !rd.showFilterConfig {
				m[name] = redacted
				continue
			}
			m[name] = rd.plain(fv)
		}
		return m
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = rd.plain(v.Index(i))
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		for it := v.MapRange(); it.Next(); {
			m[it.Key().String()] = rd.plain(it.Value())
		}
		return m
	}
	if s, ok := v.Interface().(interface{ String() string }); ok && v.Kind() != reflect.String {
		return s.String()
	}
	return v.Interface()
}
