package plugin

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

func (e *env) statusCommand() *cobra.Command {
	var output string
	var watchFlag bool
	cmd := &cobra.Command{
		Use:   "status [POLICY]",
		Short: "Show each policy's rollout: target, progress, budget, wave, window and what holds nodes back",
		Example: `  kubectl bottlerocket status
  kubectl bottlerocket status fleet --watch
  kubectl bottlerocket status fleet -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			if watchFlag {
				return e.watchStatus(cmd.Context(), c, name, output)
			}
			text, _, err := e.renderStatus(cmd.Context(), c, name, output)
			if err != nil {
				return err
			}
			_, err = io.WriteString(e.Streams.Out, text)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json or yaml (default: a table)")
	cmd.Flags().BoolVarP(&watchFlag, "watch", "w", false, "After printing, print again whenever what is printed changes")
	return cmd
}

// versions are the resource versions of the lists a status was rendered from; a watch starts
// from them.
type versions struct{ policies, nodes string }

// renderStatus reads the policies (one, or all) and the BottlerocketNodes and renders them.
func (e *env) renderStatus(ctx context.Context, c client.Client, name, output string) (string, versions, error) {
	var rv versions
	var policies v1alpha1.UpdatePolicyList
	if name != "" {
		var p v1alpha1.UpdatePolicy
		if err := get(ctx, c, name, &p); err != nil {
			return "", rv, err
		}
		policies.Items = []v1alpha1.UpdatePolicy{p}
		rv.policies = p.ResourceVersion
	} else {
		if err := c.List(ctx, &policies); err != nil {
			return "", rv, apiError(err, "list", &v1alpha1.UpdatePolicy{}, "*")
		}
		rv.policies = policies.ResourceVersion
	}
	var nodes v1alpha1.BottlerocketNodeList
	if err := c.List(ctx, &nodes); err != nil {
		return "", rv, apiError(err, "list", &v1alpha1.BottlerocketNode{}, "*")
	}
	rv.nodes = nodes.ResourceVersion
	switch {
	case output != "" && name != "":
		text, err := printObject(output, &policies.Items[0])
		return text, rv, err
	case output != "":
		text, err := printObject(output, &policies)
		return text, rv, err
	case len(policies.Items) == 0:
		return "No UpdatePolicy found.\n", rv, nil
	}
	now := e.Clock.Now()
	sums := make([]Summary, 0, len(policies.Items))
	for i := range policies.Items {
		sums = append(sums, Summarise(&policies.Items[i], nodes.Items, now, e.Location))
	}
	var b bytes.Buffer
	err := PrintSummaries(&b, sums)
	return b.String(), rv, err
}

// watchStatus prints the status, then again whenever a policy or a BottlerocketNode changes
// what it shows, until the context ends. A watch the server ends is started again.
func (e *env) watchStatus(ctx context.Context, c client.WithWatch, name, output string) error {
	last := ""
	for {
		text, rv, err := e.renderStatus(ctx, c, name, output)
		if ctx.Err() != nil { // stopped (Ctrl-C) while reading: not an error
			return nil
		}
		if err != nil {
			return err
		}
		if text != last {
			if _, err := io.WriteString(e.Streams.Out, text+"\n"); err != nil {
				return fmt.Errorf("writing the status: %w", err)
			}
			last = text
		}
		ended, err := e.watchOnce(ctx, c, name, rv)
		if ended || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// watchOnce waits for the next change of a policy or a BottlerocketNode after rv. It returns
// ended when the context is done.
func (e *env) watchOnce(ctx context.Context, c client.WithWatch, name string, rv versions) (ended bool, err error) {
	popts := &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv.policies, AllowWatchBookmarks: false}}
	if name != "" {
		popts.Raw.FieldSelector = "metadata.name=" + name
	}
	pw, err := c.Watch(ctx, &v1alpha1.UpdatePolicyList{}, popts)
	if err != nil {
		return false, apiError(err, "watch", &v1alpha1.UpdatePolicy{}, "*")
	}
	defer pw.Stop()
	nw, err := c.Watch(ctx, &v1alpha1.BottlerocketNodeList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv.nodes}})
	if err != nil {
		return false, apiError(err, "watch", &v1alpha1.BottlerocketNode{}, "*")
	}
	defer nw.Stop()
	select {
	case <-ctx.Done():
		return true, nil
	case ev, ok := <-pw.ResultChan():
		return false, watchError(ev, ok)
	case ev, ok := <-nw.ResultChan():
		return false, watchError(ev, ok)
	}
}

// watchError turns a watch's error event into an error; a closed watch or any other event is
// a reason to read again.
func watchError(ev watch.Event, ok bool) error {
	if ok && ev.Type == watch.Error {
		if st, isStatus := ev.Object.(*metav1.Status); isStatus && st.Code != 410 {
			return fmt.Errorf("watching: %s", st.Message)
		}
	}
	return nil
}

func (e *env) whyCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "why NODE",
		Short: "Say why a node is where it is, since when, and what would let it move on",
		Example: `  kubectl bottlerocket why ip-10-0-1-23.eu-central-1.compute.internal
  kubectl bottlerocket why NODE -o yaml`,
		Args: usageArgs("NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var brn v1alpha1.BottlerocketNode
			if err := get(ctx, c, args[0], &brn); err != nil {
				return err
			}
			if output != "" {
				text, err := printObject(output, &brn)
				if err == nil {
					_, err = io.WriteString(e.Streams.Out, text)
				}
				return err
			}
			f, err := e.facts(ctx, c, &brn)
			if err != nil {
				return err
			}
			return PrintExplanation(e.Streams.Out, Explain(f), f.Now, e.Location)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json or yaml prints the BottlerocketNode (default: the explanation)")
	return cmd
}

// facts reads what explaining a node takes: its policy (if it still exists) and its peers.
func (e *env) facts(ctx context.Context, c client.Client, brn *v1alpha1.BottlerocketNode) (*Facts, error) {
	f := &Facts{Node: brn, Now: e.Clock.Now(), Location: e.Location}
	if brn.Spec.Policy == "" {
		return f, nil
	}
	var p v1alpha1.UpdatePolicy
	err := c.Get(ctx, client.ObjectKey{Name: brn.Spec.Policy}, &p)
	switch {
	case client.IgnoreNotFound(err) != nil:
		return nil, apiError(err, "get", &p, brn.Spec.Policy)
	case err == nil:
		f.Policy = &p
	}
	var all v1alpha1.BottlerocketNodeList
	if err := c.List(ctx, &all); err != nil {
		return nil, apiError(err, "list", &v1alpha1.BottlerocketNode{}, "*")
	}
	for i := range all.Items {
		if all.Items[i].Spec.Policy == brn.Spec.Policy {
			f.Peers = append(f.Peers, all.Items[i])
		}
	}
	return f, nil
}

// control builds a command that reads one object, plans its change and applies it.
func control[T client.Object](e *env, use, short, what string, newObj func() T, plan func(T) Change) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  usageArgs(what),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			obj := newObj()
			if err := get(cmd.Context(), c, args[0], obj); err != nil {
				return err
			}
			return e.apply(cmd.Context(), c, obj, plan(obj))
		},
	}
}

func (e *env) pauseCommand() *cobra.Command {
	return control(e, "pause POLICY", "Pause a policy: no new node starts; nodes in flight finish (spec.paused: true)", "POLICY",
		func() *v1alpha1.UpdatePolicy { return &v1alpha1.UpdatePolicy{} }, PlanPause)
}

func (e *env) resumeCommand() *cobra.Command {
	return control(e, "resume POLICY", "Resume a policy: unpause it, and resume its rollout if it halted at its failure budget", "POLICY",
		func() *v1alpha1.UpdatePolicy { return &v1alpha1.UpdatePolicy{} },
		func(p *v1alpha1.UpdatePolicy) Change { return PlanResume(p, e.Clock.Now()) })
}

func (e *env) retryCommand() *cobra.Command {
	return control(e, "retry NODE", "Retry a Failed node (annotation "+v1alpha1.AnnotationRetry+")", "NODE",
		func() *v1alpha1.BottlerocketNode { return &v1alpha1.BottlerocketNode{} },
		func(n *v1alpha1.BottlerocketNode) Change { return PlanRetry(n, e.Clock.Now()) })
}

func (e *env) excludeCommand() *cobra.Command {
	return control(e, "exclude NODE", "Keep the operator from updating a node (Node annotation "+v1alpha1.AnnotationExclude+"=true)", "NODE",
		func() *corev1.Node { return &corev1.Node{} }, PlanExclude)
}

func (e *env) includeCommand() *cobra.Command {
	return control(e, "include NODE", "Let the operator update an excluded node again (removes the exclude annotation)", "NODE",
		func() *corev1.Node { return &corev1.Node{} }, PlanInclude)
}
