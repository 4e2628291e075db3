"""Production context (production service). Contracts arrive with the production issue."""
