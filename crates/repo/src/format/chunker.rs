//! Content-defined chunking with FastCDC (the 2020 variant, normalisation level 1), so that an
//! insertion in a file moves only the chunk boundaries near it and the rest deduplicates.

use std::io::Read;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub algorithm: ChunkerAlgorithm,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_size: 256 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!("chunker sizes out of range: {self:?}"))
        }
    }

    /// Splits everything `reader` yields; each item is one chunk's bytes, in order.
    pub fn chunks<R: Read>(&self, reader: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
        fastcdc::v2020::StreamCDC::new(reader, self.min_size, self.avg_size, self.max_size).map(
            |item| {
                item.map(|chunk| chunk.data).map_err(|e| match e {
                    fastcdc::v2020::Error::IoError(io) => io,
                    other => std::io::Error::other(other.to_string()),
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
            ..ChunkerParams::default()
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        ChunkerParams::default().validate().unwrap();
        assert!(ChunkerParams {
            min_size: 1,
            ..small()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn an_insertion_moves_only_nearby_boundaries() {
        let p = small();
        let data = pseudo_random(512 * 1024, 7);
        let mut edited = data.clone();
        edited.splice(200_000..200_000, b"inserted bytes".iter().copied());
        let a: Vec<_> = p.chunks(&data[..]).map(Result::unwrap).collect();
        let b: Vec<_> = p.chunks(&edited[..]).map(Result::unwrap).collect();
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(
            shared + 3 >= a.len(),
            "only {shared} of {} chunks survived",
            a.len()
        );
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_the_input_and_respect_bounds(len in 0usize..200_000, seed in any::<u64>()) {
            let p = small();
            let data = pseudo_random(len, seed);
            let chunks: Vec<_> = p.chunks(&data[..]).map(Result::unwrap).collect();
            prop_assert_eq!(chunks.concat(), data);
            for (i, c) in chunks.iter().enumerate() {
                prop_assert!(c.len() <= p.max_size as usize);
                if i + 1 < chunks.len() {
                    prop_assert!(c.len() >= p.min_size as usize);
                }
            }
        }
    }
}
