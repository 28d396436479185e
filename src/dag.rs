//! The dependency graph between generator instances: a deterministic topological order
//! (computed once, when the model is built), cycles reported with their whole path,
//! dependency and dependent closures, and the "waves" of instances that can run in parallel.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Instance, InstanceId};

/// Errors in the graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// The dependencies form a cycle; `path` starts and ends at the same instance.
    #[error("dependency cycle: {}", path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "))]
    Cycle {
        /// The instances along the cycle, first repeated at the end.
        path: Vec<InstanceId>,
    },
}

/// Instances and their dependency edges.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    /// instance → the instances it depends on.
    pub deps: BTreeMap<InstanceId, BTreeSet<InstanceId>>,
    /// Every node in dependency order ([`Dag::topo_order`]), computed once.
    order: Vec<InstanceId>,
}

impl Dag {
    /// The graph of the model's instances; an error if they form a cycle.
    pub fn from_instances(instances: &BTreeMap<InstanceId, Instance>) -> Result<Self, DagError> {
        let deps = instances
            .values()
            .map(|i| (i.id.clone(), i.dependency_ids().cloned().collect()))
            .collect();
        let mut dag = Dag {
            deps,
            order: Vec::new(),
        };
        dag.order = dag.topo_order()?;
        Ok(dag)
    }

    /// Every node in dependency order (dependencies first), ties broken by name.
    pub fn order(&self) -> &[InstanceId] {
        &self.order
    }

    /// Compute the dependency order (dependencies first); ties broken by name, so the order
    /// is the same on every run.
    pub fn topo_order(&self) -> Result<Vec<InstanceId>, DagError> {
        let mut indegree: BTreeMap<&InstanceId, usize> = self.deps.keys().map(|k| (k, 0)).collect();
        let mut dependents: BTreeMap<&InstanceId, Vec<&InstanceId>> = BTreeMap::new();
        for (node, deps) in &self.deps {
            for d in deps {
                *indegree.entry(node).or_default() += 1;
                indegree.entry(d).or_default();
                dependents.entry(d).or_default().push(node);
            }
        }
        let mut ready: BTreeSet<&InstanceId> = indegree
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(next) = ready.pop_first() {
            order.push(next.clone());
            for dep in dependents.get(next).into_iter().flatten() {
                let n = indegree.get_mut(dep).expect("every node has a degree");
                *n -= 1;
                if *n == 0 {
                    ready.insert(dep);
                }
            }
        }
        if order.len() < indegree.len() {
            return Err(DagError::Cycle {
                path: self.find_cycle(),
            });
        }
        Ok(order)
    }

    /// Layers in which every node's dependencies are in earlier layers: the nodes of one layer
    /// can run in parallel. Only nodes in `subset` are returned; edges to nodes outside the subset
    /// are treated as already satisfied.
    pub fn waves(&self, subset: &BTreeSet<InstanceId>) -> Result<Vec<Vec<InstanceId>>, DagError> {
        let computed;
        let order = if self.order.len() == self.deps.len() {
            &self.order
        } else {
            computed = self.topo_order()?;
            &computed
        };
        let mut level: BTreeMap<&InstanceId, usize> = BTreeMap::new();
        let mut waves: Vec<Vec<InstanceId>> = Vec::new();
        for node in order.iter().filter(|n| subset.contains(*n)) {
            let l = self
                .deps
                .get(node)
                .into_iter()
                .flatten()
                .filter_map(|d| level.get(d))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            level.insert(node, l);
            if waves.len() <= l {
                waves.resize_with(l + 1, Vec::new);
            }
            waves[l].push(node.clone());
        }
        // Levels computed over the subset only can leave a later level depending on an earlier
        // node through an outside node; that is fine because outside nodes are not run.
        Ok(waves)
    }

    /// `roots` and everything they depend on, transitively.
    pub fn closure(&self, roots: impl IntoIterator<Item = InstanceId>) -> BTreeSet<InstanceId> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<InstanceId> = roots.into_iter().collect();
        while let Some(n) = stack.pop() {
            if seen.insert(n.clone()) {
                stack.extend(self.deps.get(&n).into_iter().flatten().cloned());
            }
        }
        seen
    }

    /// Everything that depends on any of `roots`, transitively (roots excluded): what a
    /// regeneration of `roots` makes stale (DESIGN §5).
    pub fn dependents(&self, roots: &BTreeSet<InstanceId>) -> BTreeSet<InstanceId> {
        let mut out = BTreeSet::new();
        // In dependency order a node comes after all it depends on, so one pass suffices.
        for node in &self.order {
            if !roots.contains(node)
                && self.deps[node]
                    .iter()
                    .any(|d| roots.contains(d) || out.contains(d))
            {
                out.insert(node.clone());
            }
        }
        out
    }

    fn find_cycle(&self) -> Vec<InstanceId> {
        // Depth-first search in name order; the first back edge closes the reported cycle.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Active,
            Done,
        }
        fn visit<'a>(
            dag: &'a Dag,
            n: &'a InstanceId,
            marks: &mut BTreeMap<&'a InstanceId, Mark>,
            stack: &mut Vec<&'a InstanceId>,
        ) -> Option<Vec<InstanceId>> {
            match marks.get(n) {
                Some(Mark::Done) => return None,
                Some(Mark::Active) => {
                    let start = stack
                        .iter()
                        .position(|s| *s == n)
                        .expect("active nodes are on the stack");
                    let mut path: Vec<InstanceId> =
                        stack[start..].iter().map(|s| (*s).clone()).collect();
                    path.push(n.clone());
                    return Some(path);
                }
                None => {}
            }
            marks.insert(n, Mark::Active);
            stack.push(n);
            for d in dag.deps.get(n).into_iter().flatten() {
                if let Some(p) = visit(dag, d, marks, stack) {
                    return Some(p);
                }
            }
            stack.pop();
            marks.insert(n, Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for n in self.deps.keys() {
            if let Some(p) = visit(self, n, &mut marks, &mut Vec::new()) {
                return p;
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scope;
    use proptest::prelude::*;

    fn id(n: usize) -> InstanceId {
        InstanceId {
            scope: Scope::Machine("m".into()),
            generator: format!("g{n:02}"),
        }
    }

    fn dag(edges: &[(usize, usize)], n: usize) -> Dag {
        let mut d = Dag::default();
        for i in 0..n {
            d.deps.entry(id(i)).or_default();
        }
        for (a, b) in edges {
            d.deps.entry(id(*a)).or_default().insert(id(*b));
        }
        d
    }

    #[test]
    fn reports_whole_cycle() {
        let d = dag(&[(0, 1), (1, 2), (2, 0), (3, 0)], 4);
        let err = d.topo_order().unwrap_err();
        assert_eq!(
            err.to_string(),
            "dependency cycle: machines/m/g00 -> machines/m/g01 -> machines/m/g02 -> machines/m/g00"
        );
    }

    #[test]
    fn dependents_are_transitive() {
        let mut d = dag(&[(1, 0), (2, 1), (3, 0), (4, 5)], 6);
        d.order = d.topo_order().unwrap();
        let roots = BTreeSet::from([id(0)]);
        assert_eq!(d.dependents(&roots), BTreeSet::from([id(1), id(2), id(3)]));
        assert!(d.dependents(&BTreeSet::from([id(2)])).is_empty());
    }

    #[test]
    fn waves_group_independent_nodes() {
        let d = dag(&[(2, 0), (2, 1), (3, 2)], 4);
        let all = d.deps.keys().cloned().collect();
        assert_eq!(
            d.waves(&all).unwrap(),
            vec![vec![id(0), id(1)], vec![id(2)], vec![id(3)]]
        );
    }

    proptest! {
        // Edges only from higher to lower numbers: always acyclic.
        #[test]
        fn topo_order_respects_every_edge(n in 1usize..30, raw in proptest::collection::vec((0usize..30, 0usize..30), 0..80)) {
            let edges: Vec<_> = raw.into_iter().filter(|(a, b)| a < &n && b < &n && a > b).collect();
            let d = dag(&edges, n);
            let order = d.topo_order().unwrap();
            prop_assert_eq!(order.len(), n);
            let pos: BTreeMap<_, _> = order.iter().enumerate().map(|(i, x)| (x.clone(), i)).collect();
            for (a, b) in &edges {
                prop_assert!(pos[&id(*b)] < pos[&id(*a)]);
            }
            prop_assert_eq!(order, d.topo_order().unwrap(), "deterministic");
        }

        // Adding one back edge to a chain always yields a cycle, reported as a closed path
        // whose every step is an edge.
        #[test]
        fn cycle_is_reported_with_its_path(n in 2usize..20, from in 0usize..20, to in 0usize..20) {
            let (from, to) = (from % n, to % n);
            prop_assume!(from <= to);
            let mut edges: Vec<_> = (1..n).map(|i| (i, i - 1)).collect();
            edges.push((from, to));
            let d = dag(&edges, n);
            let DagError::Cycle { path } = d.topo_order().unwrap_err();
            prop_assert!(path.len() >= 2);
            prop_assert_eq!(path.first(), path.last());
            for w in path.windows(2) {
                prop_assert!(d.deps[&w[0]].contains(&w[1]), "{} -> {} is not an edge", w[0], w[1]);
            }
        }
    }
}
