// Synchronous HTTP for the k6 stand-in: the main thread hands a list of requests to a worker
// and blocks in Atomics.wait until the worker has posted the answers, then takes them off the
// port with receiveMessageOnPort. One worker, created on first use.
import { Worker, MessageChannel, receiveMessageOnPort } from 'node:worker_threads';

let worker = null;
let port = null;
let signal = null;

function start() {
  const { port1, port2 } = new MessageChannel();
  signal = new Int32Array(new SharedArrayBuffer(4));
  worker = new Worker(new URL('./http-worker.mjs', import.meta.url), {
    workerData: { port: port2, signal },
    transferList: [port2],
  });
  worker.unref();
  port1.unref();
  port = port1;
}

// requestsSync sends every request at once and answers their results in order.
export function requestsSync(reqs) {
  if (!worker) start();
  const longest = Math.max(...reqs.map((r) => r.timeoutMs));
  Atomics.store(signal, 0, 0);
  worker.postMessage(reqs);
  const waited = Atomics.wait(signal, 0, 0, longest + 10_000);
  if (waited === 'timed-out') {
    throw new Error(`HTTP worker gave no answer within ${longest + 10_000} ms`);
  }
  const msg = receiveMessageOnPort(port);
  if (!msg) throw new Error('HTTP worker woke the main thread without an answer');
  if (msg.message && msg.message.workerError) throw new Error(`HTTP worker: ${msg.message.workerError}`);
  return msg.message;
}

export function sleepSync(seconds) {
  const ms = Math.max(0, Number(seconds) * 1000);
  if (!ms) return;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export async function stop() {
  if (worker) await worker.terminate();
  worker = null;
}
