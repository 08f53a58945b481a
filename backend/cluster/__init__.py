"""The Ray cluster: the local head the embedded default starts (`head`) and the only code that talks to
the Ray Job API (`gateway`)."""
