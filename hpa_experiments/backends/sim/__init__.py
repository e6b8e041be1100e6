"""The simulation backend (digital twin): vLLM serving, load generators, pods and HPA on virtual time."""

from hpa_experiments.backends.sim import twin_core

twin_core.install()  # the compiled core (twin_core.COMPILED) when a current build exists
