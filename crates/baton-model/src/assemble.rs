use std::collections::HashMap;

use baton_core::{FinishReason, ModelResponse, Part, Usage};

use crate::StreamEvent;
use crate::error::ModelError;

/// Builds a [`ModelResponse`] from stream events, in the order the parts arrived.
#[derive(Debug, Default)]
pub struct Assembler {
    parts: Vec<Part>,
    /// Where each tool call (by its stream index) sits in `parts`.
    tool_calls: HashMap<u64, usize>,
    usage: Usage,
    finish: Option<FinishReason>,
}

impl Assembler {
    pub fn push(&mut self, event: &StreamEvent) -> Result<(), ModelError> {
        match event {
            StreamEvent::TextDelta(delta) => match self.parts.last_mut() {
                Some(Part::Text { text }) => text.push_str(delta),
                _ => self.parts.push(Part::Text { text: delta.clone() }),
            },
            StreamEvent::ReasoningDelta(delta) => match self.parts.last_mut() {
                Some(Part::Reasoning { text, replay: None }) => text.push_str(delta),
                _ => self.parts.push(Part::Reasoning { text: delta.clone(), replay: None }),
            },
            StreamEvent::ReasoningReplay(item) => match self.parts.last_mut() {
                Some(Part::Reasoning { replay: replay @ None, .. }) => *replay = Some(item.clone()),
                _ => self.parts.push(Part::Reasoning { text: String::new(), replay: Some(item.clone()) }),
            },
            StreamEvent::ToolCallStart { index, id, name } => {
                if self.tool_calls.insert(*index, self.parts.len()).is_some() {
                    return Err(ModelError::Protocol(format!("tool call {index} started twice")));
                }
                self.parts.push(Part::ToolCall { id: id.clone(), name: name.clone(), arguments: String::new() });
            }
            StreamEvent::ToolCallDelta { index, arguments: delta } => {
                match self.tool_calls.get(index).and_then(|at| self.parts.get_mut(*at)) {
                    Some(Part::ToolCall { arguments, .. }) => arguments.push_str(delta),
                    _ => {
                        return Err(ModelError::Protocol(format!(
                            "arguments for tool call {index}, which never started"
                        )));
                    }
                }
            }
            StreamEvent::ToolCallEnd { .. } | StreamEvent::AttemptFailed { .. } | StreamEvent::Restarted { .. } => {}
            StreamEvent::Usage(usage) => self.usage = *usage,
            StreamEvent::Finished(reason) => self.finish = Some(reason.clone()),
        }
        Ok(())
    }

    /// The response, once the stream said how it finished.
    pub fn finish(self) -> Result<ModelResponse, ModelError> {
        let finish = self.finish.ok_or(ModelError::StreamCut)?;
        Ok(ModelResponse { parts: self.parts, usage: self.usage, finish })
    }
}
