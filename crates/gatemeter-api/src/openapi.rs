//! The OpenAPI 3.0 document of the API. A test checks that its paths and
//! methods are exactly the router's endpoints.

use axum::Json;
use gatemeter_query::access::Access;
use gatemeter_query::{DIMENSIONS, KPI_NAMES};
use serde_json::{json, Map, Value};

use crate::auth::required_role;

fn error_responses(codes: &[&str]) -> Map<String, Value> {
    let mut responses = Map::new();
    for code in codes {
        let description = match *code {
            "400" => "Bad parameter or query; `error.message` says which.",
            "401" => "No valid API token: send `Authorization: Bearer <token>`.",
            "403" => "The token's role is below the one this endpoint needs.",
            "404" => "No such named query.",
            "406" => "None of the accepted media types can be produced.",
            "413" => "The result has more rows than the cap, or the query needs more memory than its limit.",
            "504" => "The query ran longer than its timeout and was stopped.",
            _ => "Internal error (details are in the server log, not here).",
        };
        responses.insert(
            (*code).to_owned(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    responses
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn operation(summary: &str, parameters: Value, ok: Value, errors: &[&str]) -> Value {
    let mut responses = error_responses(errors);
    responses.insert("200".to_owned(), ok);
    json!({"summary": summary, "parameters": parameters, "responses": responses})
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn result_content() -> Value {
    json!({
        "application/json": {"schema": {"$ref": "#/components/schemas/QueryResult"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}}
    })
}

/// Marks each operation that needs a token (with tokens configured) with
/// the bearer scheme, the role it needs and its 401 and 403 answers.
fn add_security(document: &mut Value) {
    let access = Access::default();
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(role) = required_role(path, &access) else {
            continue;
        };
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let note = format!(
                " Needs a token of role `{}` or above when tokens are configured.",
                role.as_str()
            );
            if let Some(Value::String(summary)) = operation.get_mut("summary") {
                summary.push_str(&note);
            }
            operation["security"] = json!([{"bearerAuth": []}]);
            if let Some(responses) = operation["responses"].as_object_mut() {
                responses.extend(error_responses(&["401", "403"]));
            }
        }
    }
    document["components"]["securitySchemes"] = json!({"bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from `gatemeter token create` (docs/security.md)."
    }});
}

pub fn document() -> Value {
    let mut document = unsecured_document();
    add_security(&mut document);
    document
}

fn unsecured_document() -> Value {
    let mut kpi_params = vec![
        query_param(
            "from",
            "Window start (RFC 3339, inclusive) on request_start; none = all data.",
            json!({"type": "string", "format": "date-time"}),
        ),
        query_param(
            "to",
            "Window end (RFC 3339, exclusive).",
            json!({"type": "string", "format": "date-time"}),
        ),
        query_param(
            "group_by",
            &format!("Comma-separated dimensions: {}.", DIMENSIONS.join(", ")),
            json!({"type": "string"}),
        ),
        query_param(
            "bucket",
            "Time bucket of request_start.",
            json!({"type": "string", "enum": ["1m", "5m", "15m", "1h", "6h", "1d"]}),
        ),
        query_param(
            "exact_percentiles",
            "true: compute from raw attempts only, percentiles exact; by default whole settled hours are read from the stored hourly rollups (counts and money exact, percentiles within 1%).",
            json!({"type": "boolean", "default": false}),
        ),
        query_param(
            "kpis",
            "Only these KPI columns (comma-separated), besides the group columns; by default all. What no chosen KPI needs is not read: spend alone merges no latency sketch.",
            json!({"type": "string", "example": "spend_usd,tokens"}),
        ),
    ];
    for dimension in DIMENSIONS {
        kpi_params.push(query_param(
            dimension,
            &format!("Only rows whose {dimension} is this value."),
            json!({"type": "string"}),
        ));
    }
    let mut kpi_properties = Map::new();
    for name in KPI_NAMES {
        kpi_properties.insert((*name).to_owned(), json!({"nullable": true, "description": "See docs/kpis.md; money is an exact decimal string."}));
    }
    let empty_list = |key: &str| json!({"type": "object", "properties": {key: {"type": "array", "items": {"type": "object"}}}});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "gatemeter",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Observability and cost analytics for LLM API gateways: KPIs, scorecard, read-only SQL over the Parquet lake, named finance queries, Prometheus metrics."
        },
        "paths": {
            "/healthz": {"get": operation("Liveness: answers while the process runs.", json!([]), ok_json("Alive.", json!({"type": "object", "properties": {"status": {"type": "string"}}})), &[])},
            "/readyz": {"get": {
                "summary": "Readiness: 200 once the lake is recovered, 503 before.",
                "responses": {
                    "200": ok_json("Ready.", json!({"type": "object", "properties": {"status": {"type": "string"}}})),
                    "503": ok_json("Still recovering the lake.", json!({"type": "object", "properties": {"status": {"type": "string"}}}))
                }
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4).",
                "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "500": error_responses(&["500"])["500"].clone()}
            }},
            "/api/v1/kpis": {"get": operation(
                "Every KPI of docs/kpis.md over a window, grouped; the rows of `gatemeter kpis --format json`.",
                Value::Array(kpi_params),
                ok_json("KPI rows.", json!({"type": "object", "properties": {"rows": {"type": "array", "items": {"$ref": "#/components/schemas/KpiRow"}}}})),
                &["400", "413", "500", "504"],
            )},
            "/api/v1/scorecard": {"get": operation(
                "The 12-KPI scorecard of the window ending now (or `at`), with the previous window as baseline.",
                json!([
                    query_param("window", "Window length: a number and m, h or d.", json!({"type": "string", "default": "24h"})),
                    query_param("at", "End of the window (RFC 3339); default now.", json!({"type": "string", "format": "date-time"}))
                ]),
                ok_json("Scorecard.", json!({"type": "object", "properties": {
                    "from": {"type": "string", "format": "date-time"},
                    "to": {"type": "string", "format": "date-time"},
                    "kpis": {"type": "array", "items": {"$ref": "#/components/schemas/ScorecardLine"}}
                }})),
                &["400", "500", "504"],
            )},
            "/api/v1/slo": {"get": operation("SLOs: burn rates per window and error budget remaining.", json!([]), ok_json("SLOs.", empty_list("slos")), &[])},
            "/api/v1/budgets": {"get": operation("Budgets: spend, remaining, projection, burn rate.", json!([]), ok_json("Budgets.", empty_list("budgets")), &[])},
            "/api/v1/alerts": {"get": operation("Alerts and their states.", json!([]), ok_json("Alerts.", empty_list("alerts")), &[])},
            "/api/v1/sql": {"post": {
                "summary": "Read-only SQL over attempts, requests, price_book and attempts_raw. DDL, DML, COPY, SET and external or URL tables are refused before planning; timeout, memory limit and row cap apply.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SqlRequest"}}}},
                "responses": {
                    "200": {"description": "The result, as the Accept header asks.", "content": result_content()},
                    "400": error_responses(&["400"])["400"].clone(),
                    "406": error_responses(&["406"])["406"].clone(),
                    "413": error_responses(&["413"])["413"].clone(),
                    "500": error_responses(&["500"])["500"].clone(),
                    "504": error_responses(&["504"])["504"].clone()
                }
            }},
            "/api/v1/queries": {"get": operation(
                "The named queries of queries/: name, kind, unit, parameters, description.",
                json!([]),
                ok_json("Named queries.", json!({"type": "object", "properties": {"queries": {"type": "array", "items": {"$ref": "#/components/schemas/NamedQuery"}}}})),
                &["500"],
            )},
            "/api/v1/queries/{name}": {"get": {
                "summary": "Runs a named query; its parameters are query parameters.",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The result, as the Accept header asks.", "content": result_content()},
                    "400": error_responses(&["400"])["400"].clone(),
                    "404": error_responses(&["404"])["404"].clone(),
                    "406": error_responses(&["406"])["406"].clone(),
                    "413": error_responses(&["413"])["413"].clone(),
                    "500": error_responses(&["500"])["500"].clone(),
                    "504": error_responses(&["504"])["504"].clone()
                }
            }},
            "/api/v1/openapi.json": {"get": operation("This document.", json!([]), ok_json("OpenAPI 3.0 document.", json!({"type": "object"})), &[])}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": ["bad_parameter", "bad_query", "forbidden_statement", "not_found", "not_acceptable", "unauthorized", "forbidden", "body_too_large", "body_timeout", "resources_exhausted", "too_many_rows", "result_too_large", "timeout", "internal"]},
                "message": {"type": "string"}
            }}}},
            "KpiRow": {"type": "object", "properties": kpi_properties, "additionalProperties": true},
            "ScorecardLine": {"type": "object", "properties": {
                "kpi": {"type": "string"}, "direction": {"type": "string"}, "target": {"type": "number"},
                "value": {"type": "number", "nullable": true}, "baseline": {"type": "number", "nullable": true},
                "status": {"type": "string", "enum": ["green", "yellow", "red", "unknown"]}
            }},
            "SqlRequest": {"type": "object", "required": ["sql"], "additionalProperties": false, "properties": {
                "sql": {"type": "string", "example": "SELECT team, sum(cost_usd) AS spend_usd FROM attempts GROUP BY team"},
                "from": {"type": "string", "format": "date-time"},
                "to": {"type": "string", "format": "date-time"}
            }},
            "QueryResult": {"type": "object", "properties": {
                "columns": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string"}}}},
                "rows": {"type": "array", "items": {"type": "object", "additionalProperties": true}}
            }},
            "NamedQuery": {"type": "object", "properties": {
                "name": {"type": "string"}, "kind": {"type": "string"}, "unit": {"type": "string"}, "description": {"type": "string"},
                "params": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string"}, "default": {"type": "string"}}}}
            }}
        }}
    })
}

pub async fn get_openapi() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routers_endpoints() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = crate::endpoints()
            .iter()
            .map(|e| (e.method.to_owned(), e.path.to_owned()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn operations_behind_a_token_say_so() {
        let doc = document();
        let sql = &doc["paths"]["/api/v1/sql"]["post"];
        assert_eq!(sql["security"], json!([{"bearerAuth": []}]));
        assert!(sql["responses"]["401"].is_object() && sql["responses"]["403"].is_object());
        assert!(sql["summary"]
            .as_str()
            .is_some_and(|s| s.contains("`finance`")));
        assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
    }
}
