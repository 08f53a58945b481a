"""What every layer shares: settings (`config`), errors, job states, access rules, API schemas, pagination, text checks."""
