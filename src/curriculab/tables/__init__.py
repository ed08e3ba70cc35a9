"""Table specs (one module per paper), aggregation and figures."""
