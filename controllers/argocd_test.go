package controllers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// TestArgoCDHealth runs config/argocd/health.lua in the Lua interpreter Argo CD embeds
// (gopher-lua) on policies as the controller writes them.
func TestArgoCDHealth(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "argocd", "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec v1alpha1.UpdatePolicySpec
		rep  planner.PolicyReport
		want string
	}{
		{"done", v1alpha1.UpdatePolicySpec{}, planner.PolicyReport{Phase: v1alpha1.RolloutUpToDate, TargetVersion: "1.26.0", Progress: "3/3",
			Counts: v1alpha1.NodeCounts{Total: 3, Updated: 3}}, "Healthy"},
		{"rolling", v1alpha1.UpdatePolicySpec{}, planner.PolicyReport{Phase: v1alpha1.RolloutProgressing, TargetVersion: "1.26.0", Progress: "1/3",
			NextNodes: []string{"b"}, Counts: v1alpha1.NodeCounts{Total: 3, Updated: 1, InProgress: 1, Pending: 1}}, "Progressing"},
		{"halted", v1alpha1.UpdatePolicySpec{}, planner.PolicyReport{Phase: v1alpha1.RolloutHalted, TargetVersion: "1.26.0", Progress: "1/3",
			Halted: true, FailedNodes: 1, Counts: v1alpha1.NodeCounts{Total: 3, Updated: 1, Failed: 1, Pending: 1}}, "Degraded"},
		{"paused half-way", v1alpha1.UpdatePolicySpec{Paused: true}, planner.PolicyReport{Phase: v1alpha1.RolloutPaused, TargetVersion: "1.26.0",
			Progress: "1/3", Paused: true, Counts: v1alpha1.NodeCounts{Total: 3, Updated: 1, Pending: 2}}, "Suspended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var obj map[string]any // numbers are float64, like Lua's
			if err := json.Unmarshal(policyAsWritten(t, tt.spec, tt.rep), &obj); err != nil {
				t.Fatal(err)
			}
			L := lua.NewState()
			defer L.Close()
			L.SetGlobal("obj", toLua(L, obj))
			if err := L.DoString(string(script)); err != nil {
				t.Fatal(err)
			}
			hs, ok := L.Get(-1).(*lua.LTable)
			if !ok {
				t.Fatalf("the script returned %v, want a table", L.Get(-1))
			}
			if got := hs.RawGetString("status").String(); got != tt.want {
				t.Errorf("health %s (%s), want %s", got, hs.RawGetString("message"), tt.want)
			}
			if hs.RawGetString("message").String() == "" {
				t.Error("no message")
			}
		})
	}
}

// toLua converts a decoded JSON value into Lua values, as Argo CD does for obj.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	}
	return lua.LNil
}
