"""Who may call the endpoint."""
