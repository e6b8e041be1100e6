"""The simulation backend (digital twin): vLLM serving, load generators, pods and HPA on virtual time."""
