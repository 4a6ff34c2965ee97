package planner

// Memo keeps what Compute derives of a node from its Node and BottlerocketNode alone (what it
// reads of them again and again, and which policy governs it) from one pass to the next, for
// the nodes whose Node and BottlerocketNode have the resourceVersions they had then (the API
// server gives an object a new one at each change): deriving them again reads memory for
// nothing, at 15,000 nodes a third of a pass. It keeps the versions, not the objects, which
// would stay in memory after the cache dropped them. An object without a resourceVersion is
// always derived afresh. A plan is the same with a Memo as without; one Memo serves one
// sequence of passes, one pass at a time.
type Memo struct {
	selectors string     // the policies and their selectors the governors were found under
	nodes     []memoNode // as last planned, in name order
}

type memoNode struct {
	name        string
	nodeVersion string
	brnVersion  string // "" without a BottlerocketNode
	view        nodeView
	governor    int32
}

// memoCursor walks the nodes of the last pass beside those of this one, both in name order,
// and gathers this pass's for the next.
type memoCursor struct {
	memo          *Memo // nil: no memo
	selectors     string
	sameSelectors bool
	last, next    []memoNode
	j             int // in last
}

func (m *Memo) cursor(selectors string, nodes int) *memoCursor {
	c := &memoCursor{memo: m, selectors: selectors}
	if m != nil {
		c.last, c.sameSelectors, c.next = m.nodes, m.selectors == selectors, make([]memoNode, 0, nodes)
	}
	return c
}

// seen returns what the last pass derived of a node whose Node has not changed since, nil if
// none; and whether its BottlerocketNode has not either. Nodes are asked for in name order.
func (c *memoCursor) seen(ns NodeState) (*memoNode, bool) {
	for c.j < len(c.last) && c.last[c.j].name != ns.Node.Name {
		if c.last[c.j].name > ns.Node.Name {
			return nil, false // a node new since
		}
		c.j++ // a node gone since
	}
	if c.j == len(c.last) || !sameVersion(c.last[c.j].nodeVersion, ns.Node.ResourceVersion) {
		return nil, false
	}
	m := &c.last[c.j]
	c.j++
	if ns.BRN == nil {
		return m, m.brnVersion == ""
	}
	return m, sameVersion(m.brnVersion, ns.BRN.ResourceVersion)
}

// sameVersion reports whether an object has the resourceVersion recorded; never without one.
func sameVersion(recorded, version string) bool { return version != "" && recorded == version }

// memoOf is what the memo keeps of a node.
func memoOf(ns NodeState, view nodeView, governor int32) memoNode {
	m := memoNode{name: ns.Node.Name, nodeVersion: ns.Node.ResourceVersion, view: view, governor: governor}
	if ns.BRN != nil {
		m.brnVersion = ns.BRN.ResourceVersion
	}
	return m
}

// keep records what this pass derived of its next node.
func (c *memoCursor) keep(n memoNode) {
	if c.memo != nil {
		c.next = append(c.next, n)
	}
}

// done makes this pass's nodes the memo's.
func (c *memoCursor) done() {
	if c.memo != nil {
		c.memo.nodes, c.memo.selectors = c.next, c.selectors
	}
}
