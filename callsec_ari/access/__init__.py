"""Staff access: roles, users, authentication and the audit trail."""
