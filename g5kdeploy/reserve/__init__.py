"""Reserve: the OAR jobs of a run (placement, submission, waiting until they run) and their release."""
