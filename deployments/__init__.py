"""Model deployments (one Serve deployment per served model) and the engines they wrap."""
