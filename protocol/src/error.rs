//! Why a message from the wire was refused.

/// One variant per rejection reason. `Copy` so it can travel into counters and logs freely;
/// [`DecodeError::as_label`] is the metric label (a bounded set, never free text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is larger than the protocol allows.
    TooLarge,
    /// The payload is empty.
    Empty,
    /// The first byte is neither a CBOR array nor a JSON `[` (or `{` for status).
    UnknownFormat,
    /// JSON was sent, but this build decodes CBOR only (no `std` feature).
    JsonNotSupported,
    /// Malformed or truncated CBOR.
    BadCbor,
    /// Malformed JSON.
    BadJson,
    /// More records than [`crate::senml::MAX_RECORDS`], or a pack with no records.
    BadRecordCount,
    /// A record has no name (neither `bn` nor `n`).
    MissingName,
    /// A name is not `urn:dev:post:{post_id}:{quantity}` nor a bare quantity.
    BadName,
    /// The quantity name is not one Taza knows.
    UnknownQuantity,
    /// The unit is not the quantity's unit.
    UnitMismatch,
    /// A record has no numeric value.
    MissingValue,
    /// A string, boolean, data or sum value: Taza readings are numbers.
    UnsupportedValue,
    /// NaN or an infinite value.
    NotFinite,
    /// The reading's time is more than [`crate::senml::MAX_FUTURE_SKEW_S`] ahead of now.
    TimeInFuture,
    /// The reading's time is before [`crate::senml::EARLIEST_TIME`]: a post whose clock is unset.
    TimeTooOld,
    /// The post id in the payload differs from the post id in the topic.
    PostMismatch,
    /// A "must understand" field (name ending in `_`, RFC 8428 §4.4) that Taza does not know.
    MustUnderstand,
    /// The topic is not `{prefix}/v1/posts/{post_id}/{kind}`.
    BadTopic,
    /// A post id that is not a short slug.
    BadPostId,
    /// A status message that is neither `offline` nor a known status object.
    BadStatus,
    /// An averaging window (`win`) of zero seconds.
    BadWindow,
}

impl DecodeError {
    /// Every variant, for registering metric series up front.
    pub const ALL: [DecodeError; 22] = [
        Self::TooLarge,
        Self::Empty,
        Self::UnknownFormat,
        Self::JsonNotSupported,
        Self::BadCbor,
        Self::BadJson,
        Self::BadRecordCount,
        Self::MissingName,
        Self::BadName,
        Self::UnknownQuantity,
        Self::UnitMismatch,
        Self::MissingValue,
        Self::UnsupportedValue,
        Self::NotFinite,
        Self::TimeInFuture,
        Self::TimeTooOld,
        Self::PostMismatch,
        Self::MustUnderstand,
        Self::BadTopic,
        Self::BadPostId,
        Self::BadStatus,
        Self::BadWindow,
    ];

    /// snake_case label for metrics and logs.
    pub const fn as_label(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Empty => "empty",
            Self::UnknownFormat => "unknown_format",
            Self::JsonNotSupported => "json_not_supported",
            Self::BadCbor => "bad_cbor",
            Self::BadJson => "bad_json",
            Self::BadRecordCount => "bad_record_count",
            Self::MissingName => "missing_name",
            Self::BadName => "bad_name",
            Self::UnknownQuantity => "unknown_quantity",
            Self::UnitMismatch => "unit_mismatch",
            Self::MissingValue => "missing_value",
            Self::UnsupportedValue => "unsupported_value",
            Self::NotFinite => "not_finite",
            Self::TimeInFuture => "time_in_future",
            Self::TimeTooOld => "time_too_old",
            Self::PostMismatch => "post_mismatch",
            Self::MustUnderstand => "must_understand",
            Self::BadTopic => "bad_topic",
            Self::BadPostId => "bad_post_id",
            Self::BadStatus => "bad_status",
            Self::BadWindow => "bad_window",
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            Self::TooLarge => "payload too large",
            Self::Empty => "empty payload",
            Self::UnknownFormat => "payload is neither SenML CBOR nor SenML JSON",
            Self::JsonNotSupported => "JSON payloads are not supported by this build",
            Self::BadCbor => "malformed or truncated CBOR",
            Self::BadJson => "malformed JSON",
            Self::BadRecordCount => "pack has no records or too many",
            Self::MissingName => "record has no name",
            Self::BadName => "record name is not urn:dev:post:{post}:{quantity}",
            Self::UnknownQuantity => "unknown quantity",
            Self::UnitMismatch => "unit does not match the quantity",
            Self::MissingValue => "record has no numeric value",
            Self::UnsupportedValue => "only numeric values are accepted",
            Self::NotFinite => "value is NaN or infinite",
            Self::TimeInFuture => "time is too far in the future",
            Self::TimeTooOld => "time is implausibly old (clock not set?)",
            Self::PostMismatch => "post id in payload differs from the topic",
            Self::MustUnderstand => "unknown must-understand field",
            Self::BadTopic => "topic does not follow {prefix}/v1/posts/{post}/{kind}",
            Self::BadPostId => "post id is not a short slug",
            Self::BadStatus => "status is neither 'offline' nor a status object",
            Self::BadWindow => "averaging window must be at least one second",
        };
        f.write_str(text)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}
