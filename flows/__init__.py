"""planflow's flows: Prefect drives the engine, retries its steps and shows the plan."""
