// Stand-in for k6/execution: what the running VU, scenario and test are.
import { state } from '../runtime/state.mjs';

class Aborted extends Error {}

const exec = {
  get vu() {
    return {
      idInInstance: state.vu,
      idInTest: state.vu,
      iterationInInstance: state.iterInScenario,
      iterationInScenario: state.iterInScenario,
      tags: {},
      metrics: { tags: {}, metadata: {} },
    };
  },
  get scenario() {
    if (state.stage !== 'iteration') throw new Error('exec.scenario is only available in a scenario iteration (not in init, setup or teardown)');
    return {
      name: state.scenario,
      executor: state.executor,
      startTime: state.startedAt,
      progress: 0,
      iterationInInstance: state.iterInScenario,
      iterationInTest: state.iterInScenario,
    };
  },
  get instance() {
    return { iterationsCompleted: state.iterInTest, iterationsInterrupted: 0, vusActive: 1, vusInitialized: 1, currentTestRunDuration: Date.now() - state.startedAt };
  },
  get test() {
    return {
      options: state.options,
      abort(msg) {
        throw new Aborted(`test aborted: ${msg || ''}`);
      },
      fail(msg) {
        throw new Aborted(`test failed: ${msg || ''}`);
      },
    };
  },
};

export default exec;
