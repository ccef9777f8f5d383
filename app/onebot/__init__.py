"""OneBot v11 protocol library. Knows nothing of tickets: no import of the app's models,
services or settings, so it could be published on its own."""
