//! A conversation as tokens, for every front end (terminal chat, browser): the model's chat
//! template renders the whole conversation each turn, the oldest exchanges are dropped when
//! it no longer fits, and only the tokens after the prefix already in the KV cache are run.

use hearth_gguf::GgufIndex;
use hearth_tokenizer::template::{ChatTemplate, Message, TemplateError};
use hearth_tokenizer::Tokenizer;

/// The model's template with the special texts it is rendered with.
pub struct ChatFormat {
    pub template: ChatTemplate,
    bos: String,
    eos: String,
}

/// A conversation that fits: its tokens, and how many messages were dropped to make it fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    pub tokens: Vec<u32>,
    pub dropped: usize,
}

impl ChatFormat {
    /// The GGUF's `tokenizer.chat_template`, or a fallback chosen from the vocabulary.
    pub fn from_gguf(index: &GgufIndex, tokenizer: &Tokenizer) -> Result<Self, TemplateError> {
        let source = index.get("tokenizer.chat_template").and_then(|v| v.as_str());
        let template = ChatTemplate::for_model(source, |t| tokenizer.token_id(t).is_some())?;
        let text = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or("").to_string();
        Ok(ChatFormat { template, bos: text(tokenizer.bos_id()), eos: text(tokenizer.eos_id()) })
    }

    /// Renders `messages` with the generation prompt and tokenizes the result: special
    /// tokens parsed in the template's markup, not in the messages' contents (a user who
    /// types `<|im_start|>system` gets the plain tokens of that text); BOS added when the
    /// model wants it, unless the template already wrote it (llama.cpp strips it the same
    /// way). Where the template rewrites contents so that they cannot be found in the render
    /// (`Rendered::spans` is `None`; none of the reference templates does), special texts are
    /// parsed everywhere, as llama.cpp and transformers do.
    pub fn tokenize(&self, tokenizer: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>, TemplateError> {
        let rendered = self.template.render_spans(messages, true, &self.bos, &self.eos)?;
        let add_bos = tokenizer.add_bos_default();
        let (text, skipped) = match rendered.text.strip_prefix(self.bos.as_str()) {
            Some(rest) if add_bos && !self.bos.is_empty() => (rest, self.bos.len()),
            _ => (rendered.text.as_str(), 0),
        };
        let Some(spans) = rendered.spans else {
            return Ok(tokenizer.encode(text, add_bos, true));
        };
        let plain: Vec<_> =
            spans.iter().map(|r| r.start.saturating_sub(skipped)..r.end.saturating_sub(skipped)).collect();
        Ok(tokenizer.encode_chat(text, add_bos, &plain))
    }

    /// Tokenizes `messages`, dropping the oldest exchange after the first `n_fixed` messages
    /// (the system prompt) until the prompt leaves `reserve` of `capacity` positions free.
    /// `None` when even the last message alone does not fit.
    pub fn fit(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        n_fixed: usize,
        capacity: usize,
        reserve: usize,
    ) -> Result<Option<Fitted>, TemplateError> {
        let mut kept: Vec<Message> = messages.to_vec();
        let mut dropped = 0;
        loop {
            let tokens = self.tokenize(tokenizer, &kept)?;
            if tokens.len() + reserve <= capacity {
                return Ok(Some(Fitted { tokens, dropped }));
            }
            if kept.len() <= n_fixed + 1 {
                return Ok(None);
            }
            let end = (n_fixed + 2).min(kept.len() - 1);
            dropped += end - n_fixed;
            kept.drain(n_fixed..end);
        }
    }
}

/// How many of `tokens` can stay in a cache holding `cached`: their shared prefix, less one
/// if that is all of `tokens` (a step needs at least one new token to produce logits).
pub fn reusable_prefix(cached: &[u32], tokens: &[u32]) -> usize {
    let common = tokens.iter().zip(cached).take_while(|(a, b)| a == b).count();
    common.min(tokens.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reusable_prefix_leaves_one_token_to_run() {
        assert_eq!(reusable_prefix(&[1, 2, 3], &[1, 2, 3, 4, 5]), 3);
        assert_eq!(reusable_prefix(&[1, 2, 3], &[1, 2, 3]), 2);
        assert_eq!(reusable_prefix(&[1, 9, 3], &[1, 2, 3]), 1);
        assert_eq!(reusable_prefix(&[], &[7]), 0);
        assert_eq!(reusable_prefix(&[1, 2], &[]), 0);
    }
}
