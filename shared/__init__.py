"""Core shared by every function: settings, Twilio access, validation, responses.

Modules here import nothing heavy at import time: a cold TwiML request must not pay
for the Twilio REST client or its HTTP stack (see twilio_client.get_client).
"""
