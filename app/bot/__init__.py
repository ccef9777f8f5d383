"""The QQ helpdesk: where OneBot meets tickets (commands, identities, notifications)."""
