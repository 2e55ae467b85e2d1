"""The Functions app: composition only. Each folder holds one blueprint."""

import azure.functions as func

from Broadcast import bp as broadcast
from Cleanup import bp as cleanup
from Conversations import bp as conversations
from DeliveryStatus import bp as delivery_status
from Health import bp as health
from IncomingCall import bp as incoming_call
from IncomingSms import bp as incoming_sms
from MakeCall import bp as make_call
from OpenApi import bp as openapi
from SendSms import bp as send_sms
from shared.caller import mobile_auth_level
from StatusCallback import bp as status_callback
from TwiML import bp as twiml

# Mobile routes need a function key unless CALLER_AUTH has us check identities ourselves;
# Twilio's routes (TwiML, StatusCallback, IncomingCall, IncomingSms), health and the OpenAPI
# document are anonymous; Cleanup is a timer (daily expiry of state).
app = func.FunctionApp(http_auth_level=mobile_auth_level())
app.register_functions(send_sms)
app.register_functions(make_call)
app.register_functions(twiml)
app.register_functions(status_callback)
app.register_functions(incoming_call)
app.register_functions(incoming_sms)
app.register_functions(conversations)
app.register_functions(delivery_status)
app.register_functions(broadcast)
app.register_functions(health)
app.register_functions(openapi)
app.register_functions(cleanup)
