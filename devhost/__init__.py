"""Local development tooling (not deployed): a Functions host and a Twilio sandbox."""
