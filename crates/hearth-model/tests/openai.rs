//! `hearth_model::openai` against the OpenAI Python client: request bodies the official client
//! sends (captured by `fixtures/openai/make.py`), and the field names of its response models.

use std::collections::BTreeSet;

use hearth_model::openai::{
    chunk, completion, parse_request, ApiError, Chunk, ErrorCode, FinishReason, Meta, Role, Usage, HONOURED, IGNORED,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/openai/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn case(name: &str) -> Value {
    let all = fixture("requests.json");
    let found = all["cases"].as_array().unwrap().iter().find(|c| c["name"] == name);
    found.unwrap_or_else(|| panic!("no case {name}"))["body"].clone()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn what_the_official_client_sends_is_read_as_it_meant() {
    let r = parse_request(&case("minimal")).unwrap();
    assert_eq!(r.model.as_deref(), Some("smollm2"));
    assert_eq!((r.messages.len(), r.messages[0].role, r.messages[0].content.as_str()), (1, Role::User, "Hello"));
    assert!(!r.stream && r.max_tokens.is_none() && r.stop.is_empty() && r.temperature.is_none());

    // developer → system; text parts joined; `name` accepted; user/metadata/store ignored.
    let r = parse_request(&case("sampling")).unwrap();
    let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::User]);
    assert_eq!(r.messages[1].content, "Hello there");
    assert_eq!((r.temperature, r.top_p, r.seed, r.max_tokens), (Some(0.5), Some(0.9), Some(42), Some(32)));
    assert_eq!(r.stop, ["\n\n", "END"]);

    // max_tokens as the alias; a stop string alone; usage asked for in the stream.
    let r = parse_request(&case("stream_usage")).unwrap();
    assert!(r.stream && r.include_usage);
    assert_eq!((r.max_tokens, r.stop.as_slice()), (Some(8), ["###".to_string()].as_slice()));

    // llama.cpp's names, through the client's extra_body.
    let r = parse_request(&case("extensions")).unwrap();
    assert_eq!((r.top_k, r.min_p, r.repeat_penalty), (Some(20), Some(0.1), Some(1.1)));
    let s = r.sampling(&hearth_model::SamplingParams::default(), 9);
    assert_eq!((s.top_k, s.seed), (20, 9));
}

#[test]
fn what_hearth_cannot_do_is_refused_by_name() {
    let refused = [
        ("refused_n", ErrorCode::UnsupportedParameter, "n"),
        ("refused_logprobs", ErrorCode::UnsupportedParameter, "logprobs"),
        ("refused_tools", ErrorCode::UnsupportedParameter, "tools"),
        ("refused_json", ErrorCode::UnsupportedParameter, "response_format"),
        ("refused_penalty", ErrorCode::UnsupportedParameter, "presence_penalty"),
        ("refused_image", ErrorCode::UnsupportedParameter, "messages[0].content[0].type"),
        ("refused_tool_role", ErrorCode::UnsupportedParameter, "messages[0].role"),
        ("refused_unknown", ErrorCode::UnsupportedParameter, "mirostat"),
    ];
    for (name, code, param) in refused {
        let e = parse_request(&case(name)).expect_err(name);
        assert_eq!((e.code, e.param.as_deref()), (code, Some(param)), "{name}: {e}");
        assert!(e.message.contains(param), "{name}: {}", e.message);
        let body = e.body();
        assert_eq!(keys(&body["error"]), ["code", "message", "param", "type"].map(String::from).into());
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "unsupported_parameter");
    }
    // Values out of range, named.
    let user = serde_json::json!([{ "role": "user", "content": "U" }]);
    let bad = [
        (serde_json::json!({ "messages": user, "temperature": 3 }), "temperature"),
        (serde_json::json!({ "messages": user, "top_p": 0 }), "top_p"),
        (serde_json::json!({ "messages": user, "max_tokens": 0 }), "max_tokens"),
        (serde_json::json!({ "messages": user, "max_tokens": 5, "max_completion_tokens": 6 }), "max_tokens"),
        (serde_json::json!({ "messages": user, "stop": ["a", "b", "c", "d", "e"] }), "stop"),
        (serde_json::json!({ "messages": user, "stop": [""] }), "stop[0]"),
        (serde_json::json!({ "messages": user, "stop": ["a", "x".repeat(257)] }), "stop[1]"),
        (serde_json::json!({ "messages": user, "seed": -1.5 }), "seed"),
        (serde_json::json!({ "messages": user, "repetition_penalty": 0 }), "repetition_penalty"),
        (serde_json::json!({ "messages": user, "repeat_penalty": -1 }), "repeat_penalty"),
        // Finite in JSON, infinite as the sampler's f32 (found by fuzz/openai_request).
        (serde_json::json!({ "messages": user, "repeat_penalty": 1.2e123 }), "repeat_penalty"),
        (serde_json::json!({ "messages": user, "stream_options": { "include_usage": true } }), "stream_options"),
        (serde_json::json!({ "messages": [] }), "messages"),
        (serde_json::json!({ "messages": [{ "role": "wizard", "content": "x" }] }), "messages[0].role"),
        (serde_json::json!({ "messages": [{ "role": "user", "content": 5 }] }), "messages[0].content"),
    ];
    for (body, param) in bad {
        let e: ApiError = parse_request(&body).expect_err(param);
        assert_eq!((e.code, e.param.as_deref()), (ErrorCode::InvalidValue, Some(param)), "{body}: {e}");
    }
    // The lists do not overlap.
    assert!(HONOURED.iter().all(|h| !IGNORED.contains(h)));
}

#[test]
fn responses_have_the_fields_of_the_clients_models() {
    let oracle = fixture("responses.json");
    let meta = Meta::new(0xabc, 1_765_000_000, "smollm2");
    let usage = Usage::new(30, 12, 5);
    let whole = completion(&meta, "Hi.", FinishReason::Stop, &usage);
    assert!(keys(&whole).is_subset(&names(&oracle["completion_fields"])), "{whole}");
    assert_eq!(keys(&whole), keys(&oracle["completion"]));
    assert_eq!(keys(&whole["choices"][0]), keys(&oracle["completion"]["choices"][0]));
    assert!(keys(&whole["choices"][0]).is_subset(&names(&oracle["choice_fields"])));
    assert!(keys(&whole["usage"]).is_subset(&names(&oracle["usage_fields"])));
    assert_eq!(keys(&whole["usage"]), keys(&oracle["completion"]["usage"]));
    let want = serde_json::json!({
        "prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35, "prompt_tokens_details": { "cached_tokens": 12 }
    });
    assert_eq!(whole["usage"], want);
    assert!(whole["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(whole["object"], oracle["completion"]["object"]);

    // A stream: the role first, then text, an empty delta with the reason, then the usage.
    let first = chunk(&meta, Chunk::Role);
    assert_eq!(keys(&first), keys(&oracle["chunk"]));
    assert_eq!(keys(&first["choices"][0]), keys(&oracle["chunk"]["choices"][0]));
    assert!(keys(&first).is_subset(&names(&oracle["chunk_fields"])));
    assert_eq!(first["choices"][0]["delta"], oracle["chunk"]["choices"][0]["delta"]);
    assert_eq!(first["object"], oracle["chunk"]["object"]);
    let text = chunk(&meta, Chunk::Content("Hi"));
    assert_eq!(
        (text["choices"][0]["delta"].clone(), text["usage"].clone()),
        (serde_json::json!({ "content": "Hi" }), Value::Null)
    );
    let last = chunk(&meta, Chunk::Finish(FinishReason::Length));
    assert_eq!(last["choices"][0]["delta"], serde_json::json!({}));
    assert!(names(&oracle["finish_reasons"]).contains(last["choices"][0]["finish_reason"].as_str().unwrap()));
    let tail = chunk(&meta, Chunk::Usage(&usage));
    assert_eq!(
        (tail["choices"].clone(), tail["usage"]["total_tokens"].clone()),
        (serde_json::json!([]), serde_json::json!(35))
    );
    for c in [&first, &text, &last, &tail] {
        assert_eq!((&c["id"], &c["created"]), (&whole["id"], &whole["created"]), "one id and time per request");
    }
}

#[test]
fn hearths_extensions_live_under_one_key_and_are_checked_too() {
    use hearth_model::openai::Extensions;
    let user = serde_json::json!([{ "role": "user", "content": "U" }]);
    let r = parse_request(&serde_json::json!({ "messages": user })).unwrap();
    assert_eq!(r.hearth, None, "no key, no extension (and no `hearth` in the response)");
    let r = parse_request(
        &serde_json::json!({ "messages": user, "hearth": { "overflow": "drop_oldest", "tokens": true } }),
    )
    .unwrap();
    assert_eq!(r.hearth, Some(Extensions { drop_oldest: true, tokens: true }));
    let r = parse_request(&serde_json::json!({ "messages": user, "hearth": {} })).unwrap();
    assert_eq!(r.hearth, Some(Extensions::default()));
    let bad = [
        (serde_json::json!({ "hearth": { "secret": 1 } }), ErrorCode::UnsupportedParameter, "hearth.secret"),
        (serde_json::json!({ "hearth": { "overflow": "maybe" } }), ErrorCode::InvalidValue, "hearth.overflow"),
        (serde_json::json!({ "hearth": { "tokens": "yes" } }), ErrorCode::InvalidValue, "hearth.tokens"),
        (serde_json::json!({ "hearth": [] }), ErrorCode::InvalidValue, "hearth"),
    ];
    for (mut body, code, param) in bad {
        body["messages"] = user.clone();
        let e = parse_request(&body).expect_err(param);
        assert_eq!((e.code, e.param.as_deref()), (code, Some(param)), "{body}: {e}");
    }
}

/// `chat_template_kwargs` as llama.cpp's server and vLLM take it, for the thinking switch:
/// `enable_thinking` only (a boolean); any other template variable is refused by name.
#[test]
fn the_thinking_switch_comes_as_chat_template_kwargs() {
    let user = serde_json::json!([{ "role": "user", "content": "U" }]);
    let r = parse_request(&serde_json::json!({ "messages": user })).unwrap();
    assert_eq!(r.thinking, None);
    for on in [true, false] {
        let body = serde_json::json!({ "messages": user, "chat_template_kwargs": { "enable_thinking": on } });
        assert_eq!(parse_request(&body).unwrap().thinking, Some(on));
    }
    let bad = [
        (
            serde_json::json!({ "tools_in_prompt": 1 }),
            ErrorCode::UnsupportedParameter,
            "chat_template_kwargs.tools_in_prompt",
        ),
        (
            serde_json::json!({ "enable_thinking": "yes" }),
            ErrorCode::InvalidValue,
            "chat_template_kwargs.enable_thinking",
        ),
        (serde_json::json!(true), ErrorCode::InvalidValue, "chat_template_kwargs"),
    ];
    for (kwargs, code, param) in bad {
        let body = serde_json::json!({ "messages": user, "chat_template_kwargs": kwargs });
        let e = parse_request(&body).expect_err(param);
        assert_eq!((e.code, e.param.as_deref()), (code, Some(param)), "{body}: {e}");
    }
}

#[test]
fn stop_reasons_and_server_errors_say_what_openai_would() {
    use hearth_model::StopReason;
    let finish = |r: StopReason| serde_json::to_value(FinishReason::from(r)).unwrap();
    assert_eq!(finish(StopReason::EndOfGeneration), "stop");
    assert_eq!(finish(StopReason::StopString), "stop");
    assert_eq!(finish(StopReason::MaxTokens), "length");
    assert_eq!(finish(StopReason::ContextFull), "length");
    for (code, status, kind) in [
        (ErrorCode::InvalidApiKey, 401, "authentication_error"),
        (ErrorCode::InvalidHost, 403, "invalid_request_error"),
        (ErrorCode::QueueFull, 503, "server_error"),
        (ErrorCode::ContextLengthExceeded, 400, "invalid_request_error"),
        (ErrorCode::ModelNotFound, 404, "invalid_request_error"),
    ] {
        assert_eq!((code.status(), code.kind()), (status, kind), "{code:?}");
    }
    let e = ApiError::from(&hearth_model::chat::TurnError::TooLong { prompt_tokens: Some(90), capacity: 64 });
    assert_eq!((e.code, e.param.as_deref()), (ErrorCode::ContextLengthExceeded, Some("messages")));
    assert!(e.message.contains("90") && e.message.contains("64"), "{}", e.message);
}
