package plugin

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// env is what every command shares: the options and the kubeconfig flags.
type env struct {
	Options
	flags *genericclioptions.ConfigFlags
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// client connects with the kubeconfig (and its identity) the flags select.
func (e *env) client() (client.WithWatch, error) {
	cfg, err := e.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cfg.UserAgent = FieldManager
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, nil
}

// kube is a client-go clientset with the same kubeconfig, for kubectl's drain rules.
func (e *env) kube() (kubernetes.Interface, error) {
	cfg, err := e.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cfg.UserAgent = FieldManager
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return cs, nil
}

// kinds names the objects in messages as kubectl does.
func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *v1alpha1.UpdatePolicy:
		return "updatepolicy"
	case *v1alpha1.BottlerocketNode:
		return "bottlerocketnode"
	case *corev1.Node:
		return "node"
	}
	return fmt.Sprintf("%T", obj)
}

// apiError turns an API error into a message a person acts on.
func apiError(err error, verb string, obj client.Object, name string) error {
	ref := fmt.Sprintf("%s %q", kindOf(obj), name)
	switch {
	case apierrors.IsNotFound(err):
		if _, ok := obj.(*v1alpha1.UpdatePolicy); ok {
			return fmt.Errorf("%s not found (kubectl get upol lists the policies)", ref)
		}
		return fmt.Errorf("%s not found", ref)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("not allowed to %s %s: %w", verb, ref, err)
	}
	return fmt.Errorf("%s %s: %w", verb, ref, err)
}

// get reads one cluster-scoped object.
func get(ctx context.Context, c client.Client, name string, obj client.Object) error {
	if err := c.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
		return apiError(err, "get", obj, name)
	}
	return nil
}

// apply makes the change's patch (if any) with the plugin's field manager and says what it did.
func (e *env) apply(ctx context.Context, c client.Client, obj client.Object, ch Change) error {
	if ch.Patch != nil {
		if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, ch.Patch), client.FieldOwner(FieldManager)); err != nil {
			return apiError(err, "patch", obj, obj.GetName())
		}
	}
	if _, err := fmt.Fprintln(e.Streams.Out, ch.Message); err != nil {
		return fmt.Errorf("writing the result: %w", err)
	}
	return nil
}

// printObject writes obj as JSON or YAML, with its apiVersion and kind (and its items').
func printObject(format string, obj runtime.Object) (string, error) {
	var p printers.ResourcePrinter
	switch format {
	case "json":
		p = &printers.JSONPrinter{}
	case "yaml":
		p = &printers.YAMLPrinter{}
	default:
		return "", fmt.Errorf("%w %q: use json or yaml, or leave -o out for a table", errNoOutput, format)
	}
	if err := setKinds(obj); err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := p.PrintObj(obj, &b); err != nil {
		return "", fmt.Errorf("printing %s: %w", format, err)
	}
	return b.String(), nil
}

func setKinds(obj runtime.Object) error {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		return fmt.Errorf("kind of %T: %w", obj, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	switch l := obj.(type) {
	case *v1alpha1.UpdatePolicyList:
		for i := range l.Items {
			if err := setKinds(&l.Items[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkOutput validates -o before anything is read.
func checkOutput(format string) error {
	switch strings.ToLower(format) {
	case "", "json", "yaml":
		return nil
	}
	return fmt.Errorf("%w %q: use json or yaml, or leave -o out for a table", errNoOutput, format)
}
