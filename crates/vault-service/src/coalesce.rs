//! Calls that arrive while an earlier one is still out share one call. A
//! guarded read asks policy once and appends once to the ledger; with many
//! reads in flight, each of those as its own RPC costs an HTTP/2 exchange on
//! both ends, the callee's authentication and, for policy, a change-feed
//! round. Grouped, a `BatchCheck` or an `AppendEvents` of many events carries
//! them at the cost of about one.
//!
//! A call made while no group is out leaves at once, alone: an idle service
//! adds no wait. Otherwise it queues, and when the group out is answered the
//! next one takes every queued call (up to `max_group`) together. One group at
//! a time groups the most: two or four out at once gave fewer calls a second
//! (docs/benchmarks.md, "Vault").
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

type Job<J, R> = (J, oneshot::Sender<R>);

/// The handle of a grouping task; cheap to clone.
pub struct Coalescer<J, R> {
    jobs: mpsc::Sender<Job<J, R>>,
}

impl<J, R> std::fmt::Debug for Coalescer<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").field("queued", &(self.jobs.max_capacity() - self.jobs.capacity())).finish()
    }
}

impl<J, R> Clone for Coalescer<J, R> {
    fn clone(&self) -> Self {
        Self { jobs: self.jobs.clone() }
    }
}

impl<J: Send + 'static, R: Send + 'static> Coalescer<J, R> {
    /// Starts the grouping task on the current runtime. `run` answers a group
    /// with one result per job, in order; a job left without one gets `None`.
    pub fn start<F, Fut>(max_group: usize, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (jobs, mut queue) = mpsc::channel::<Job<J, R>>(max_group);
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut group = vec![first];
                while group.len() < max_group
                    && let Ok(job) = queue.try_recv()
                {
                    group.push(job);
                }
                let (jobs, replies): (Vec<J>, Vec<oneshot::Sender<R>>) = group.into_iter().unzip();
                // A group that panics drops its replies (its calls get `None`); the next one goes on.
                if let Ok(results) = tokio::spawn(run(jobs)).await {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
            }
        });
        Self { jobs }
    }

    /// Queues `job` for the next group without waiting for its answer, which is
    /// dropped (`run` reports failures itself); waits only while the queue is full.
    /// `false` if the task has stopped.
    pub async fn submit(&self, job: J) -> bool {
        let (reply, _) = oneshot::channel();
        self.jobs.send((job, reply)).await.is_ok()
    }

    /// Runs `job` in the next group; `None` if no answer came (the task stopped,
    /// the group panicked, or `run` answered fewer jobs than it was given).
    pub async fn call(&self, job: J) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((job, reply)).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use super::*;

    #[tokio::test]
    async fn a_lone_call_leaves_at_once_and_gets_its_own_answer() {
        let coalescer = Coalescer::start(10, |jobs: Vec<u32>| async move { jobs.iter().map(|j| j * 2).collect() });
        let started = std::time::Instant::now();
        assert_eq!(coalescer.call(21).await, Some(42));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn calls_made_while_a_group_is_out_share_the_next_one_in_order() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&groups);
        let (open, gate) = tokio::sync::watch::channel(false);
        let coalescer = Coalescer::start(100, move |jobs: Vec<u32>| {
            seen.lock().unwrap().push(jobs.clone());
            let mut gate = gate.clone();
            async move {
                // The first group stays out until the gate opens.
                gate.wait_for(|open| *open).await.unwrap();
                jobs.iter().map(|j| j + 1000).collect()
            }
        });
        let first = tokio::spawn({
            let c = coalescer.clone();
            async move { c.call(0).await }
        });
        while groups.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=5)
            .map(|j| {
                let c = coalescer.clone();
                tokio::spawn(async move { c.call(j).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        open.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(1000));
        for (j, call) in rest.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), Some(j as u32 + 1001));
        }
        assert_eq!(*groups.lock().unwrap(), vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn one_group_is_out_at_a_time_and_none_exceeds_the_largest_size() {
        let out = Arc::new(AtomicUsize::new(0));
        let most_out = Arc::new(AtomicUsize::new(0));
        let (o, m) = (Arc::clone(&out), Arc::clone(&most_out));
        let coalescer = Coalescer::start(3, move |jobs: Vec<u32>| {
            assert!(jobs.len() <= 3);
            let (o, m) = (Arc::clone(&o), Arc::clone(&m));
            async move {
                m.fetch_max(o.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                o.fetch_sub(1, Ordering::SeqCst);
                jobs
            }
        });
        let calls: Vec<_> = (0..40)
            .map(|j| {
                let c = coalescer.clone();
                tokio::spawn(async move { c.call(j).await })
            })
            .collect();
        for (j, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), Some(j as u32));
        }
        assert_eq!(most_out.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_submitted_job_runs_before_a_later_call_returns() {
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&done);
        let coalescer = Coalescer::start(10, move |jobs: Vec<u32>| {
            let seen = Arc::clone(&seen);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                seen.lock().unwrap().extend(jobs.iter().copied());
                jobs
            }
        });
        for j in 0..25 {
            assert!(coalescer.submit(j).await);
        }
        assert_eq!(coalescer.call(99).await, Some(99));
        let expected: Vec<u32> = (0..25).chain([99]).collect();
        assert_eq!(*done.lock().unwrap(), expected, "queued jobs run in order, before the later call's answer");
    }

    #[tokio::test]
    async fn a_job_left_unanswered_gets_none() {
        let silent = Coalescer::start(10, |_jobs: Vec<u32>| async move { Vec::<u32>::new() });
        assert_eq!(silent.call(7).await, None);
        let panicking = Coalescer::start(10, |jobs: Vec<u32>| async move {
            assert!(jobs.is_empty(), "the callee failed");
            jobs
        });
        assert_eq!(panicking.call(7).await, None);
        // The task goes on after a panicking group.
        assert_eq!(panicking.call(8).await, None);
    }
}
