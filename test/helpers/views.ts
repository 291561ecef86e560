import { View } from "../../src/log/view.js";

/** Term 1 of the smallest cluster: one sequencer `seq-0`, storage node `sto-0`, engine `eng-0`. */
export function oneOfEachView(): View {
  return new View({
    term: 1,
    physicalLogs: 1,
    sequencers: [["seq-0"]],
    storages: ["sto-0"],
    engines: ["eng-0"],
    replication: 1,
  });
}
