//! Past the index: a mutated GGUF header (read as the start of a longer file, as the browser
//! reads a model's index before its tensors) goes through everything a model file reaches
//! before the GPU: `Config::from_gguf`, the memory plan at several contexts, the tokenizer
//! built from its vocabulary, and the chat template rendering a conversation and being
//! tokenized, all with the production fuel and caps. Run with `-timeout` and `-rss_limit_mb`
//! so that a slow template or a quadratic allocation counts as a crash.
#![no_main]

use hearth_gguf::{parse_index, Parse};
use hearth_gpu::MemoryPlan;
use hearth_model::chat::ChatFormat;
use hearth_model::Config;
use hearth_tokenizer::template::Message;
use hearth_tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Parse::Complete(index)) = parse_index(data, None) else { return };
    if let Ok(config) = Config::from_gguf(&index) {
        let limits = hearth_gpu::wgpu::Limits::default();
        for context in [1, 512, config.max_context.clamp(1, 1 << 20)] {
            let plan = MemoryPlan::new(&config, &index, context, &limits);
            let _ = (plan.total(), plan.check(&limits));
        }
    }
    let Ok(tokenizer) = Tokenizer::from_gguf(&index) else { return };
    let text = "Hello <|im_start|>user\n wörld  123 <s></s>\t\u{1F600}";
    let ids = tokenizer.encode(text, true, true);
    let _ = tokenizer.decode(&ids);
    let Ok(format) = ChatFormat::from_gguf(&index, &tokenizer) else { return };
    let messages = [
        Message::new("system", "Be brief."),
        Message::user(text),
        Message::new("assistant", "<|im_end|> ok"),
        Message::user("again"),
    ];
    if let Ok(tokens) = format.tokenize(&tokenizer, &messages) {
        let _ = tokenizer.decode(&tokens);
    }
});
