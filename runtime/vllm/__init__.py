"""The vLLM engine: its server (started here, or the job's), the records through it, its figures against the plan."""
