"""Error bodies of the Compute Engine API, as it sends them: direct HTTP errors and the errors a
failed Operation carries. Messages follow texts seen from the real API; the few marked
"stand-in wording" are plausible shapes whose exact text could not be checked."""

from __future__ import annotations

PROJECT_NUMBER = "123456789012"
_HTTP_TEXT = {400: "BAD REQUEST", 403: "FORBIDDEN", 404: "NOT FOUND", 409: "CONFLICT",
              412: "PRECONDITION FAILED", 429: "TOO MANY REQUESTS", 500: "INTERNAL SERVER ERROR",
              503: "SERVICE UNAVAILABLE"}


class ApiError(Exception):
    """Raised inside a handler: becomes the HTTP answer (code, body)."""

    def __init__(self, code: int, body: dict):
        super().__init__(body["error"]["message"])
        self.code = code
        self.body = body


def http_error(code: int, message: str, reason: str, *, domain: str = "global",
               status: str | None = None, details: list | None = None, **extra) -> ApiError:
    error: dict = {"code": code, "message": message,
                   "errors": [{"message": message, "domain": domain, "reason": reason, **extra}]}
    if status:
        error["status"] = status
    if details:
        error["details"] = details
    return ApiError(code, {"error": error})


def not_found(resource_path: str) -> ApiError:
    return http_error(404, f"The resource '{resource_path}' was not found", "notFound")


def already_exists(resource_path: str) -> ApiError:
    return http_error(409, f"The resource '{resource_path}' already exists", "alreadyExists")


def invalid(field: str, value, why: str) -> ApiError:
    return http_error(400, f"Invalid value for field '{field}': '{value}'. {why}", "invalid")


def in_use(kind: str, resource_path: str, user_path: str) -> ApiError:
    return http_error(400, f"The {kind} resource '{resource_path}' is already being used by "
                           f"'{user_path}'", "resourceInUseByAnotherResource")


def precondition(message: str) -> ApiError:
    return http_error(412, message, "conditionNotMet", location="If-Match", locationType="header")


def permission_denied(permission: str, resource_path: str) -> ApiError:
    return http_error(
        403, f"Required '{permission}' permission for '{resource_path}'", "forbidden",
        details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                  "domain": "iam.googleapis.com",
                  "metadata": {"permission": permission, "resource": resource_path}}])


def service_disabled(project: str) -> ApiError:
    url = f"https://console.developers.google.com/apis/api/compute.googleapis.com/overview?project={PROJECT_NUMBER}"
    message = (f"Compute Engine API has not been used in project {PROJECT_NUMBER} before or it is "
               f"disabled. Enable it by visiting {url} then retry. If you enabled this API recently, "
               "wait a few minutes for the action to propagate to our systems and retry.")
    return http_error(
        403, message, "accessNotConfigured", domain="usageLimits", status="PERMISSION_DENIED",
        extendedHelp="https://console.developers.google.com",
        details=[
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
             "domain": "googleapis.com",
             "metadata": {"service": "compute.googleapis.com", "consumer": f"projects/{PROJECT_NUMBER}",
                          "activationUrl": url, "serviceTitle": "Compute Engine API",
                          "containerInfo": PROJECT_NUMBER}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": message},
            {"@type": "type.googleapis.com/google.rpc.Help",
             "links": [{"description": "Google developers console API activation", "url": url}]},
        ])


def transient(code: int) -> ApiError:
    """The bodies of a burst fault: 429 rate limit, 503 backend error, 500 internal error."""
    if code == 429:
        message = (f"Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
                   f"'compute.googleapis.com' for consumer 'project_number:{PROJECT_NUMBER}'.")
        return http_error(429, message, "rateLimitExceeded", domain="usageLimits",
                          status="RESOURCE_EXHAUSTED", details=[{
                              "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                              "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                              "metadata": {"service": "compute.googleapis.com",
                                           "consumer": f"projects/{PROJECT_NUMBER}",
                                           "quota_metric": "compute.googleapis.com/default",
                                           "quota_limit": "defaultPerMinutePerProject"}}])
    if code == 503:
        return http_error(503, "The service is currently unavailable.", "backendError")
    if code == 500:
        return http_error(500, "Internal error. Please try again or contact Google Support.",
                          "backendError")
    raise ValueError(f"no transient body for HTTP {code}")


# --- errors carried by a DONE Operation: (httpErrorStatusCode, {"errors": [...]}) ---

def operation_error(http_code: int, errors: list[dict]) -> dict:
    return {"httpErrorStatusCode": http_code, "httpErrorMessage": _HTTP_TEXT[http_code],
            "error": {"errors": errors}}


def stockout(project: str, zone: str, *, with_details: bool = True) -> dict:
    where = f"projects/{project}/zones/{zone}"
    if with_details:
        code = "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
        message = (f"The zone '{where}' does not have enough resources available to fulfill the "
                   "request.  '(resource type:compute)'.")
    else:
        code = "ZONE_RESOURCE_POOL_EXHAUSTED"
        message = (f"The zone '{where}' does not have enough resources available to fulfill the "
                   "request.  Try a different zone, or try again later.")
    details = [{"help": {"links": [{"description": "Troubleshooting documentation",
                                    "url": "https://cloud.google.com/compute/docs/resource-error"}]}},
               {"localizedMessage": {"locale": "en-US", "message": message}}]
    return operation_error(503, [{"code": code, "message": message, "errorDetails": details}])


def quota_exceeded(metric: str, limit: float, region: str | None) -> dict:
    where = f"in region {region}" if region else "globally"
    message = f"Quota '{metric}' exceeded.  Limit: {float(limit):.1f} {where}."
    info = {"metricName": f"compute.googleapis.com/{metric.lower()}",
            "limitName": f"{metric.replace('_', '-')}-per-project" + ("-region" if region else ""),
            "limit": float(limit)}
    if region:
        info["dimensions"] = {"region": region}
    return operation_error(403, [{"code": "QUOTA_EXCEEDED", "message": message,
                                  "errorDetails": [{"quotaInfo": info}]}])


def quota_exceeded_http(metric: str, limit: float, region: str | None) -> ApiError:
    """The same refusal answered synchronously by insert (HTTP 403 quotaExceeded)."""
    where = f"in region {region}" if region else "globally"
    return http_error(403, f"Quota '{metric}' exceeded.  Limit: {float(limit):.1f} {where}.",
                      "quotaExceeded", domain="usageLimits")
