"""`hpa-exp tune`: search an HPA's or KEDA ScaledObject's settings on the digital twin.

Each point of a search space (space.py) is a variant of the experiment's autoscaler manifest;
it is judged by an ensemble of seeds (cost in GPU-hours, SLO attainment: attainment.py), on
local processes (runner_local.py) or as one Kubernetes Indexed Job (runner_kube.py, worker.py).
pareto.py keeps the points no other point beats on both, and picks the recommendation;
report.py writes the table, the plot and the recommended manifest.  search.py ties them
together and makes a search resumable (one result file per point).
"""
