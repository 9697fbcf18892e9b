// Package argocd holds the Argo CD health checks of Latchkey's kinds, in Argo CD's
// resource_customizations layout; its test runs them with the interpreter Argo CD
// itself embeds (github.com/yuin/gopher-lua), against each kind's health_test.yaml.
package argocd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

const customizations = "resource_customizations/latchkey.dev"

type healthTests struct {
	Tests []struct {
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

func TestHealthChecks(t *testing.T) {
	kinds, err := os.ReadDir(customizations)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"API", "APIKey", "OAuthClient", "OAuthGrant"} {
		if _, err := os.Stat(filepath.Join(customizations, want, "health.lua")); err != nil {
			t.Errorf("no health check for %s: %v", want, err)
		}
	}
	var first []byte
	for _, kind := range kinds {
		dir := filepath.Join(customizations, kind.Name())
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		// One script in Argo CD's one-file-per-kind layout: every kind has the same
		// kstatus conditions, so the copies must not drift apart.
		if first == nil {
			first = script
		} else if !bytes.Equal(script, first) {
			t.Errorf("%s/health.lua differs from %s/health.lua; the scripts are one script, copied", kind.Name(), kinds[0].Name())
		}
		raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var cases healthTests
		if err := yaml.UnmarshalStrict(raw, &cases); err != nil {
			t.Fatalf("%s/health_test.yaml: %v", kind.Name(), err)
		}
		if len(cases.Tests) == 0 {
			t.Fatalf("%s has no test cases", kind.Name())
		}
		for _, tc := range cases.Tests {
			t.Run(kind.Name()+"/"+tc.InputPath, func(t *testing.T) {
				input, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
				if err != nil {
					t.Fatal(err)
				}
				status, message := run(t, string(script), input)
				if status != tc.HealthStatus.Status || message != tc.HealthStatus.Message {
					t.Errorf("got %s %q, want %s %q", status, message, tc.HealthStatus.Status, tc.HealthStatus.Message)
				}
			})
		}
	}
}

// run evaluates a health script as Argo CD does: the object as the global obj
// (a table converted from its JSON form), the script's return value a table with
// status and message.
func run(t *testing.T, script string, input []byte) (status, message string) {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal(input, &obj); err != nil {
		t.Fatal(err)
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("the script failed: %v", err)
	}
	result, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("the script returned %s, not a table", L.Get(-1).Type())
	}
	return lua.LVAsString(result.RawGetString("status")), lua.LVAsString(result.RawGetString("message"))
}

// toLua converts decoded JSON into Lua values the way Argo CD's health checks see
// them: objects and arrays are tables, numbers are numbers.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, item := range v {
			t.RawSetString(k, toLua(L, item))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	return lua.LNil
}
