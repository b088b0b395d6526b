//! The JS API's requests (`sdk/hearth.js`): OpenAI chat-completions bodies read by
//! `hearth_model::openai`, run first in first out as chat turns of the loaded model, and
//! answered with the same JSON shapes `hearth serve` sends (`Chat*` events, by request id).
//!
//! An abort drops a queued request, or stops a running one after the token in flight: the
//! generation loop asks after every token.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use hearth_model::chat::TurnError;
use hearth_model::openai::{self, parse_request, ApiError, Chunk, ErrorCode, Meta};
use hearth_model::ModelError;
use serde_json::Value;

use super::{post, reinit, Busy, State};
use crate::protocol::FromWorker;

#[derive(Default)]
pub struct Api {
    queue: RefCell<VecDeque<(u32, String)>>,
    draining: Cell<bool>,
    running: Cell<Option<u32>>,
    /// Tokens the running request has decoded so far.
    decoded: Cell<u32>,
    abort_at: Cell<Option<u32>>,
}

/// Queues a request; starts the queue's runner if it is idle.
pub fn enqueue(st: &Rc<State>, request_id: u32, body: String) {
    st.api.queue.borrow_mut().push_back((request_id, body));
    if !st.api.draining.replace(true) {
        wasm_bindgen_futures::spawn_local(drain(st.clone()));
    }
}

/// Called straight from the message handler, so it is seen between tokens.
pub fn abort(st: &State, request_id: u32) {
    let api = &st.api;
    if api.running.get() == Some(request_id) {
        if api.abort_at.get().is_none() {
            api.abort_at.set(Some(api.decoded.get()));
        }
        return;
    }
    let mut queue = api.queue.borrow_mut();
    if let Some(at) = queue.iter().position(|(id, _)| *id == request_id) {
        queue.remove(at);
        post(&FromWorker::ChatEnded { request_id, decoded: 0, decoded_at_abort: Some(0) });
    }
}

async fn drain(st: Rc<State>) {
    loop {
        let next = st.api.queue.borrow_mut().pop_front();
        let Some((request_id, body)) = next else { break };
        // Running from here: an abort while it waits below is recorded, not lost.
        st.api.running.set(Some(request_id));
        st.api.decoded.set(0);
        st.api.abort_at.set(None);
        // A load holds the engine: wait for it (requests keep their order).
        let busy = loop {
            if let Some(busy) = Busy::take(&st) {
                break busy;
            }
            gloo_timers::future::TimeoutFuture::new(20).await;
        };
        let lost = if st.api.abort_at.get().is_some() { false } else { run(&st, request_id, &body).await };
        post(&FromWorker::ChatEnded {
            request_id,
            decoded: st.api.decoded.get(),
            decoded_at_abort: st.api.abort_at.get(),
        });
        st.api.running.set(None);
        drop(busy);
        if lost {
            // The model's buffers died with the device: open a new one.
            reinit(&st).await;
        }
    }
    st.api.draining.set(false);
}

fn refuse(request_id: u32, e: &ApiError) {
    let code = serde_json::to_value(e.code).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    post(&FromWorker::ChatError {
        request_id,
        status: e.code.status(),
        message: e.message.clone(),
        kind: e.code.kind().to_string(),
        code,
        param: e.param.clone(),
    });
}

/// Runs one request; true when the GPU device was lost.
async fn run(st: &Rc<State>, request_id: u32, body: &str) -> bool {
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            refuse(request_id, &ApiError::new(ErrorCode::InvalidValue, None, format!("the request is not JSON: {e}")));
            return false;
        }
    };
    let request = match parse_request(&value) {
        Ok(r) => r,
        Err(e) => {
            refuse(request_id, &e);
            return false;
        }
    };
    let taken = st.session.borrow_mut().take();
    let Some(mut session) = taken else {
        let why = if st.gpu().is_none() { ErrorCode::NoWebgpu } else { ErrorCode::ModelNotLoaded };
        refuse(request_id, &ApiError::new(why, None, "no model is loaded: createEngine({ model }) loads one"));
        return false;
    };
    if let Some(m) = request.model.as_deref().filter(|m| *m != session.info.id) {
        let message = format!("the model {m:?} is not loaded; this engine has {:?}", session.info.id);
        refuse(request_id, &ApiError::new(ErrorCode::ModelNotFound, Some("model"), message));
        *st.session.borrow_mut() = Some(session);
        return false;
    }

    let now_ms = js_sys::Date::now();
    let entropy = (js_sys::Math::random() * 2f64.powi(53)) as u64;
    let meta = Meta::new(entropy, (now_ms / 1000.0) as u64, &session.info.id);
    let (stream, include_usage, ext) = (request.stream, request.include_usage, request.hearth);
    let send = |value: Value| post(&FromWorker::ChatChunk { request_id, json: value.to_string() });
    // The role's chunk waits for the first text, so that a request refused by the turn (a
    // prompt longer than the context) gets its error instead of a stream.
    let started = Cell::new(false);
    let start = || {
        if stream && !started.replace(true) {
            send(openai::chunk(&meta, Chunk::Role));
        }
    };
    let mut text = String::new();
    let mut on_text = |piece: &str| {
        if stream {
            start();
            send(openai::chunk(&meta, Chunk::Content(piece)));
        } else {
            text.push_str(piece);
        }
    };
    // Asked once per token decoded (and not ending the reply).
    let interrupted = || {
        st.api.decoded.set(st.api.decoded.get() + 1);
        st.api.abort_at.get().is_some()
    };
    let (messages, params, overflow) = request.turn(&openai::default_sampling(0), entropy);
    let result = session.chat(&messages, &params, overflow, &mut on_text, &interrupted).await;
    let lost = matches!(&result, Err(TurnError::Model(ModelError::DeviceLost(_))));
    match result {
        Ok(turn) => {
            st.api.decoded.set(turn.generation.tokens.len() as u32);
            if stream {
                start();
                openai::closing_chunks(&meta, &turn, include_usage, ext.as_ref()).into_iter().for_each(send);
            } else {
                let whole = openai::turn_completion(&meta, &text, &turn, ext.as_ref());
                post(&FromWorker::ChatCompletion { request_id, json: whole.to_string() });
            }
        }
        Err(e) => refuse(request_id, &ApiError::from(&e)),
    }
    if !lost {
        *st.session.borrow_mut() = Some(session);
    }
    lost
}
