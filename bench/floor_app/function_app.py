"""The cold-start floor: the platform's own imports and one trivial function."""

import azure.durable_functions  # noqa: F401  # the app imports it; its cost is the platform's
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="hello")
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")
