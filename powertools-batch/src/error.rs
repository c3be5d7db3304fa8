/// Why a batch as a whole failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Every record of the batch failed, so Lambda should retry the whole batch (as Powertools
    /// does); turn it off with [`raise_on_all_failed`](crate::BatchProcessor::raise_on_all_failed).
    #[error("all {count} records of the batch failed; the first: {first_error}")]
    AllRecordsFailed {
        /// How many records the batch had.
        count: usize,
        /// Why the first one failed.
        first_error: String,
    },
}

impl Error {
    /// A stable identifier of the error kind (Powertools' name).
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::AllRecordsFailed { .. } => "BatchProcessingError",
        }
    }
}

powertools_core::diagnostic_from_error_type!(Error);
