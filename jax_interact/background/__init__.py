"""Delegation to a background model (SPEC §5): transcript and context package, workers, the
orchestrator that feeds job results into the interaction model's background slots."""
