"""The local cluster kit: a kind cluster with a model server, Prometheus and prometheus-adapter
(or, with `--autoscaler keda`, a pinned KEDA release and the experiment's ScaledObject; an HPA
only on request: an experiment applies its own, and two HPAs on one Deployment disable each
other), driven through the `kind` and `kubectl` command-line tools.

Every step is a plain argument list run without a shell, so `--dry-run` can print exactly
what would run.  All kubectl calls name the kind context explicitly: the kit never touches
whatever cluster the user's current context points at.

Modules: `steps` (what runs: the spec and the argument lists), `execution` (running steps),
`lifecycle` (`cluster up` / `cluster down`, waiting until the HPA sees its metrics), `status`
(what the cluster has: nodes, pods, the metrics APIs, HPAs and their metric values).
"""
