//! OpenAI request bodies as `hearth serve` and the JS API read them: any bytes that parse as
//! JSON go through `parse_request`, and an accepted request through `ChatRequest::turn` and
//! the response builders. Nothing may panic; a refusal must name a field that is in the body
//! (or none, for the body as a whole).

#![no_main]

use hearth_model::openai::{self, parse_request, Chunk, FinishReason, Meta, Usage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    match parse_request(&body) {
        Ok(request) => {
            let (messages, params, _) = request.turn(&openai::default_sampling(0), 7);
            assert_eq!(messages.len(), request.messages.len());
            assert!(params.sampling.validate().is_ok(), "accepted settings the sampler refuses: {request:?}");
            let meta = Meta::new(1, 2, "m");
            let usage = Usage::new(3, 1, 4);
            let _ = openai::completion(&meta, "x", FinishReason::Stop, &usage);
            let _ = openai::chunk(&meta, Chunk::Content("x"));
        }
        Err(e) => {
            let _ = e.body();
            if let Some(param) = &e.param {
                // The field named is the body's: a key it has (an unknown key is named as
                // it is), or a path under one (`stream_options.x`, `messages[2].content`).
                let top = param.split(['.', '[']).next().unwrap_or_default();
                assert!(
                    body.get(param.as_str()).is_some() || body.get(top).is_some() || top == "messages",
                    "refusal names {param:?}, which the body does not have: {body}"
                );
            }
        }
    }
});
