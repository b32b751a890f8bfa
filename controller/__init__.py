"""Hebbian-plasticity controller: the plastic network, its rules, genome files and the control loop."""
