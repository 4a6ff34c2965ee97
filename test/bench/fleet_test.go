package bench_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// The benchmarks' Nodes are what an EKS cluster of Bottlerocket nodes holds, not names with a
// label: the controller's memory, its cache's transform and the API server's watch traffic
// all scale with the objects' size.
//
//   - Labels: those the kubelet sets on registration (kubernetes.io/hostname, os, arch and
//     their beta.* twins), the cloud provider's (node.kubernetes.io/instance-type,
//     topology.kubernetes.io/region and zone, failure-domain.beta.*), EKS managed node
//     groups' (eks.amazonaws.com/nodegroup, nodegroup-image, capacityType,
//     sourceLaunchTemplateId/Version), the EBS CSI driver's topology.ebs.csi.aws.com/zone and
//     topology.k8s.aws/zone-id.
//   - Annotations: alpha.kubernetes.io/provided-node-ip, csi.volume.kubernetes.io/nodeid,
//     node.alpha.kubernetes.io/ttl, volumes.kubernetes.io/controller-managed-attach-detach.
//   - Status, as the kubelet's node status setters write it (pkg/kubelet/nodestatus/setters.go):
//     NodeAddress (InternalIP, InternalDNS, Hostname), MachineInfo (capacity and allocatable
//     of cpu, memory, pods, ephemeral-storage, hugepages), VersionInfo and the boot ID
//     (nodeInfo), DaemonEndpoints, the four conditions with their heartbeat times, and
//     Images: the node's images by size, at most nodeStatusMaxImages (50), each with its
//     digest and tag names. A Bottlerocket EKS node runs about 40.
const imagesPerNode = 40

// fleetImages are the images every node of the benchmark holds, shared as on a real fleet
// (the same DaemonSets and workloads).
var fleetImages = func() []corev1.ContainerImage {
	images := make([]corev1.ContainerImage, imagesPerNode)
	for i := range images {
		repo := fmt.Sprintf("602401143452.dkr.ecr.us-west-2.amazonaws.com/workload-%02d", i)
		sum := sha256.Sum256([]byte(repo))
		images[i] = corev1.ContainerImage{
			Names:     []string{repo + "@sha256:" + hex.EncodeToString(sum[:]), repo + ":v1." + strconv.Itoa(i) + ".0-eksbuild.1"},
			SizeBytes: int64(20_000_000 + i*3_000_000),
		}
	}
	return images
}()

// realisticNode returns a Node as EKS registers a Bottlerocket host, with the labels the
// benchmark selects by (bench/batch).
func realisticNode(name string, i int, batch string) *corev1.Node {
	zones := []string{"us-west-2a", "us-west-2b", "us-west-2c"}
	zone := zones[i%3]
	ip := fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256)
	instance := fmt.Sprintf("i-0%016x", i)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"bench/batch":                                   batch,
				"beta.kubernetes.io/arch":                       "amd64",
				"beta.kubernetes.io/instance-type":              "m6i.2xlarge",
				"beta.kubernetes.io/os":                         "linux",
				"eks.amazonaws.com/capacityType":                "ON_DEMAND",
				"eks.amazonaws.com/nodegroup":                   "bottlerocket-" + batch,
				"eks.amazonaws.com/nodegroup-image":             "ami-0a1b2c3d4e5f67890",
				"eks.amazonaws.com/sourceLaunchTemplateId":      "lt-0123456789abcdef0",
				"eks.amazonaws.com/sourceLaunchTemplateVersion": "1",
				"failure-domain.beta.kubernetes.io/region":      "us-west-2",
				"failure-domain.beta.kubernetes.io/zone":        zone,
				"k8s.io/cloud-provider-aws":                     "a94967527effcefb5f5829f529c0a1b9",
				"kubernetes.io/arch":                            "amd64",
				"kubernetes.io/hostname":                        name,
				"kubernetes.io/os":                              "linux",
				"node.kubernetes.io/instance-type":              "m6i.2xlarge",
				"topology.ebs.csi.aws.com/zone":                 zone,
				"topology.k8s.aws/zone-id":                      "usw2-az" + strconv.Itoa(i%3+1),
				"topology.kubernetes.io/region":                 "us-west-2",
				corev1.LabelTopologyZone:                        zone,
			},
			Annotations: map[string]string{
				"alpha.kubernetes.io/provided-node-ip":                   ip,
				"csi.volume.kubernetes.io/nodeid":                        `{"ebs.csi.aws.com":"` + instance + `"}`,
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
			},
		},
		Spec: corev1.NodeSpec{ProviderID: "aws:///" + zone + "/" + instance},
	}
}

// realisticStatus is the status a kubelet posts for the node, at time now.
func realisticStatus(node *corev1.Node, i int, now time.Time) corev1.NodeStatus {
	t := metav1.NewTime(now)
	resources := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("8"),
		corev1.ResourceMemory:           resource.MustParse("32386520Ki"),
		corev1.ResourcePods:             resource.MustParse("58"),
		corev1.ResourceEphemeralStorage: resource.MustParse("81854Mi"),
		"hugepages-1Gi":                 resource.MustParse("0"),
		"hugepages-2Mi":                 resource.MustParse("0"),
	}
	allocatable := resources.DeepCopy()
	allocatable[corev1.ResourceCPU] = resource.MustParse("7910m")
	allocatable[corev1.ResourceMemory] = resource.MustParse("31369688Ki")
	condition := func(typ corev1.NodeConditionType, status corev1.ConditionStatus, reason, message string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: status, LastHeartbeatTime: t, LastTransitionTime: t, Reason: reason, Message: message}
	}
	ip := node.Annotations["alpha.kubernetes.io/provided-node-ip"]
	return corev1.NodeStatus{
		Capacity:    resources,
		Allocatable: allocatable,
		Conditions: []corev1.NodeCondition{
			condition(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			condition(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			condition(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			condition(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ip},
			{Type: corev1.NodeInternalDNS, Address: node.Name + ".us-west-2.compute.internal"},
			{Type: corev1.NodeHostName, Address: node.Name + ".us-west-2.compute.internal"},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               fmt.Sprintf("ec2%029x", i),
			SystemUUID:              fmt.Sprintf("ec2%05x-0000-0000-0000-000000000000", i),
			BootID:                  "boot-" + node.Name,
			KernelVersion:           "6.1.119",
			OSImage:                 "Bottlerocket OS 1.25.0 (aws-k8s-1.31)",
			ContainerRuntimeVersion: "containerd://1.7.24+bottlerocket",
			KubeletVersion:          "v1.31.4-eks-0b7a5a3",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
		},
		Images: fleetImages,
	}
}

// realisticAgent is the full report of an agent on a host offered 1.26.0.
func realisticAgent(name string, now time.Time) *v1alpha1.AgentStatus {
	t := metav1.NewTime(now)
	return &v1alpha1.AgentStatus{
		ObservedGeneration: 1,
		CurrentVersion:     "1.25.0", Variant: "aws-k8s-1.31", Arch: "x86_64", BootID: "boot-" + name,
		AvailableVersions: []string{"1.26.0", "1.25.1", "1.25.0"},
		UpdateState:       v1alpha1.HostStateAvailable,
		LastAction:        &v1alpha1.AgentAction{Action: v1alpha1.ActionNone, Result: v1alpha1.ActionSucceeded, Time: t},
		RebootRecord:      &v1alpha1.RebootRecord{BootID: "boot-" + name, FromVersion: "1.24.1", ToVersion: "1.25.0", Time: t, AcceptedTime: &t},
		OwnerSettings:     &v1alpha1.HostUpdateSettings{VersionLock: "latest"},
	}
}

// parallel runs do(i) for i in [0, n) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, do func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := do(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// createFleet creates n realistic Nodes, in batches of batch for the benchmark's policies.
func createFleet(ctx context.Context, c client.Client, n, batch int) error {
	now := time.Now()
	return parallel(ctx, n, 8, func(ctx context.Context, i int) error {
		node := realisticNode(nodeName(i), i, strconv.Itoa(i/batch))
		if err := c.Create(ctx, node); err != nil {
			return fmt.Errorf("creating Node %s: %w", node.Name, err)
		}
		node.Status = realisticStatus(node, i, now)
		if err := c.Status().Update(ctx, node); err != nil {
			return fmt.Errorf("writing the status of Node %s: %w", node.Name, err)
		}
		return nil
	})
}

// reportAgents writes every node's agent report into its BottlerocketNode.
func reportAgents(ctx context.Context, c client.Client, n int) error {
	now := time.Now()
	return parallel(ctx, n, 8, func(ctx context.Context, i int) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error { // the controller writes its status too
			var brn v1alpha1.BottlerocketNode
			if err := c.Get(ctx, client.ObjectKey{Name: nodeName(i)}, &brn); err != nil {
				return err
			}
			brn.Status.Agent = realisticAgent(brn.Name, now)
			return c.Status().Update(ctx, &brn)
		})
	})
}

// heartbeat posts every node's status again with a new heartbeat time, as each kubelet does
// every nodeStatusReportFrequency (5 minutes) or when its status changes; a fleet of kubelets
// restarted together posts them in a wave. posted counts the statuses posted so far.
func heartbeat(ctx context.Context, c client.Client, n int, posted *atomic.Int64) error {
	now := time.Now()
	return parallel(ctx, n, 8, func(ctx context.Context, i int) error {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var node corev1.Node
			if err := c.Get(ctx, client.ObjectKey{Name: nodeName(i)}, &node); err != nil {
				return err
			}
			for k := range node.Status.Conditions {
				node.Status.Conditions[k].LastHeartbeatTime = metav1.NewTime(now)
			}
			return c.Status().Update(ctx, &node)
		})
		if err != nil {
			return fmt.Errorf("posting the status of Node %s: %w", nodeName(i), err)
		}
		posted.Add(1)
		return nil
	})
}

func nodeName(i int) string { return fmt.Sprintf("ip-n-%05d", i) }
