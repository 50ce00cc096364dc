"""Dataset builders for ARO: the four test configs, their perturbations, the synthetic world and publishing."""
