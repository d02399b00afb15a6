//! Token counts with OpenAI's o200k_base vocabulary, held compactly. The common loaders keep every
//! token's bytes three times over in hash maps of vectors (about 55 MB for this vocabulary); baton
//! needs only counts, so it keeps the bytes once, in rank order, behind a table of 4-byte slots
//! (about 4 MB), loaded on first use.
//!
//! `assets/o200k_base.bin` is the published vocabulary (`o200k_base.tiktoken`: one base64 token per
//! line, its rank the line's number) with each token stored as one length byte and its bytes.

use std::sync::LazyLock;

use fancy_regex::Regex;

const VOCABULARY: &[u8] = include_bytes!("../assets/o200k_base.bin");

/// How text is cut into pieces before pairs are merged (the vocabulary's own pattern).
const PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// The vocabulary: tokens by rank, and an open-addressing table from a token's bytes to its rank.
struct Vocabulary {
    /// Where each token starts in `VOCABULARY` (after its length byte); one more entry at the end.
    starts: Vec<u32>,
    /// `rank + 1` of the token hashed to each slot (0: empty); a power of two in size.
    slots: Vec<u32>,
    pieces: Regex,
}

/// FNV-1a: short keys, no allocation, and the same in every process.
fn hash(bytes: &[u8]) -> usize {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)) as usize
}

static O200K: LazyLock<Vocabulary> = LazyLock::new(Vocabulary::load);

impl Vocabulary {
    fn load() -> Vocabulary {
        let mut starts = Vec::with_capacity(200_000);
        let mut at = 0;
        while at < VOCABULARY.len() {
            let length = usize::from(VOCABULARY[at]);
            starts.push((at + 1) as u32);
            at += 1 + length;
        }
        let tokens = starts.len();
        // The end of the last token: each token ends one byte before the next one starts.
        starts.push((VOCABULARY.len() + 1) as u32);
        let mut slots = vec![0u32; (tokens * 2).next_power_of_two()];
        let mask = slots.len() - 1;
        let mut vocabulary = Vocabulary { starts, slots: Vec::new(), pieces: piece_pattern() };
        for rank in 0..tokens {
            let mut slot = hash(vocabulary.token(rank)) & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = rank as u32 + 1;
        }
        vocabulary.slots = slots;
        vocabulary
    }

    fn token(&self, rank: usize) -> &'static [u8] {
        let start = self.starts[rank] as usize;
        let end = self.starts[rank + 1] as usize - 1;
        &VOCABULARY[start..end]
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut slot = hash(bytes) & mask;
        loop {
            match self.slots[slot] {
                0 => return None,
                entry if self.token(entry as usize - 1) == bytes => return Some(entry - 1),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// Tokens of one piece: adjacent parts merge, the pair whose merged bytes rank lowest first
    /// (the leftmost among equals), until no merged pair is a token. Parts are a linked list and
    /// candidate pairs a heap, so a long piece (a base64 blob) costs n log n, not n².
    fn piece_tokens(&self, piece: &[u8]) -> usize {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        if piece.len() < 2 || self.rank(piece).is_some() {
            return 1;
        }
        let n = piece.len();
        // `next[i]`: where the part starting at byte i ends; `live[i]`: a part starts at i.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut live = vec![true; n];
        let mut candidates = BinaryHeap::new();
        let offer = |heap: &mut BinaryHeap<_>, start: usize, middle: usize, end: usize| {
            if let Some(rank) = self.rank(&piece[start..end]) {
                heap.push(Reverse((rank, start, middle, end)));
            }
        };
        for start in 0..n - 1 {
            offer(&mut candidates, start, start + 1, start + 2);
        }
        let mut parts = n;
        while let Some(Reverse((_, start, middle, end))) = candidates.pop() {
            let current = live[start] && next[start] == middle && live[middle] && next[middle] == end;
            if !current {
                continue;
            }
            live[middle] = false;
            next[start] = end;
            if end < n {
                prev[end] = start;
                offer(&mut candidates, start, end, next[end]);
            }
            if start > 0 {
                let before = prev[start];
                offer(&mut candidates, before, start, end);
            }
            parts -= 1;
        }
        parts
    }
}

fn piece_pattern() -> Regex {
    // A constant pattern, tested below: it compiles.
    Regex::new(PATTERN).unwrap_or_else(|error| unreachable!("the o200k pattern: {error}"))
}

/// The number of o200k_base tokens of `text` (no special tokens).
pub fn count(text: &str) -> u64 {
    let vocabulary = &*O200K;
    let mut tokens = 0;
    for piece in vocabulary.pieces.find_iter(text) {
        // Only a backtracking limit can stop the pattern; then every byte of the text counts as a
        // token once more: an estimate too high, never too low.
        match piece {
            Ok(piece) => tokens += vocabulary.piece_tokens(piece.as_str().as_bytes()) as u64,
            Err(_) => return tokens + text.len() as u64,
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::{O200K, count};

    #[test]
    fn counts_agree_with_the_reference_tokenizer() {
        let reference = tiktoken_rs::o200k_base().unwrap();
        let mut samples: Vec<String> = vec![
            String::new(),
            "hello world".into(),
            "Hello, World! It's a test: don't, won't, you'll.\n\n\tindented\r\n".into(),
            "fn main() { println!(\"{}\", 1 + 2_000_000); } // 12345678901234567890".into(),
            "é à ü ß 東京 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🎉🎉 עברית العربية".into(),
            "x".repeat(5000),
            " ".repeat(300) + "end",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!!!!!!!!!!!!////\n\n\n".into(),
        ];
        for file in ["src/bpe.rs", "src/estimate.rs", "src/protocol/anthropic.rs", "Cargo.toml"] {
            samples.push(std::fs::read_to_string(file).unwrap());
        }
        // Bytes of every kind, as text: a deterministic scramble of code points.
        let scrambled: String =
            (1..20_000u32).filter_map(|i| char::from_u32((i.wrapping_mul(2_654_435_761) >> 7) % 0x2_0000)).collect();
        samples.push(scrambled);
        for sample in &samples {
            assert_eq!(
                count(sample),
                reference.encode_ordinary(sample).len() as u64,
                "{:?}",
                &sample[..sample.len().min(80)]
            );
        }
    }

    #[test]
    fn every_token_is_found_at_its_rank() {
        let vocabulary = &*O200K;
        assert_eq!(vocabulary.starts.len() - 1, 199_998);
        for rank in (0..199_998).step_by(97).chain([0, 255, 199_997]) {
            assert_eq!(vocabulary.rank(vocabulary.token(rank)), Some(rank as u32));
        }
        assert_eq!(vocabulary.rank(b"\xff\xfe\xfd not a token"), None);
    }
}
