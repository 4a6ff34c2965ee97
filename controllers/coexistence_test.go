package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

var _ = Describe("Coexistence with the upstream Bottlerocket update operator", func() {
	It("acts on no node while the upstream operator is installed, and says so", func(ctx SpecContext) {
		s := runtime.NewScheme()
		Expect(apiextensionsv1.AddToScheme(s)).To(Succeed())
		c, err := client.New(env.Config, client.Options{Scheme: s})
		Expect(err).NotTo(HaveOccurred())
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: "bottlerocketshadows.brupop.bottlerocket.aws"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "brupop.bottlerocket.aws", Scope: apiextensionsv1.NamespaceScoped,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "bottlerocketshadows", Singular: "bottlerocketshadow", Kind: "BottlerocketShadow", ListKind: "BottlerocketShadowList"},
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v2", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: ptr.To(true)}}}},
			},
		}
		Expect(c.Create(ctx, crd)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(client.IgnoreNotFound(c.Delete(ctx, crd))).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(crd), crd)) }).Should(BeTrue())
		})

		f := newFleet()
		p := f.addPolicy("p", rolloutSpec())
		node := f.addBottlerocketNodes("a")[0]
		agentReady(node)
		expectStatus(p.Name, hasCondition(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonConflictingOperator))
		expectStatus(p.Name, hasCondition(v1alpha1.ConditionStalled, metav1.ConditionTrue, v1alpha1.ReasonConflictingOperator))
		Consistently(func(g Gomega) {
			g.Expect(getBRN(g, node).Spec.Action).NotTo(Equal(v1alpha1.ActionStage))
		}, "300ms").Should(Succeed(), "no intent while the upstream operator is installed")
	})
})
