//! A retry needs a copy of the request.

/// Makes the copy of a request that a retry sends.
///
/// [`CloneRequest`] (the default) clones requests that are `Clone`. A request that
/// cannot be copied (`None`) is sent once and never retried: nothing is ever sent twice
/// beyond the attempts made.
///
/// ```
/// use seawall::retry::replay::{CloneRequest, Replay};
///
/// assert_eq!(CloneRequest.replay(&String::from("GET /")), Some(String::from("GET /")));
/// ```
pub trait Replay<Req> {
    /// A copy of `request` to send again, or `None` if it cannot be sent again.
    fn replay(&self, request: &Req) -> Option<Req>;

    /// Whether `copy`, made earlier by [`replay`](Self::replay), can be sent now and in
    /// full. A copy whose body is buffered while the first attempt streams it can stop
    /// being whole (the body outgrew its buffer) or be not yet whole (another attempt is
    /// still reading it); such a copy is not sent. Copies made by cloning always can.
    ///
    /// ```
    /// use seawall::retry::replay::{CloneRequest, Replay};
    ///
    /// let copy = CloneRequest.replay(&7_u32).unwrap();
    /// assert!(CloneRequest.can_replay(&copy));
    /// ```
    fn can_replay(&self, copy: &Req) -> bool {
        let _ = copy;
        true
    }
}

/// Replays requests by cloning them; see [`Replay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneRequest;

impl<Req: Clone> Replay<Req> for CloneRequest {
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}
