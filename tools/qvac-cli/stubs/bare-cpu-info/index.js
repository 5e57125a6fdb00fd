// Stand-in for the native `bare-cpu-info` addon, which the npm registry reachable from our CI
// machines does not serve. The QVAC SDK loads it only as an optional diagnostics collector and
// copes with a collector that reports itself unavailable, which is all this module does.
class CollectorUnavailable {
  query () { throw new Error('bare-cpu-info is not installed (stub)') }
  sample () { throw new Error('bare-cpu-info is not installed (stub)') }
  devices () { return [] }
  destroy () {}
}
CollectorUnavailable.constants = { arch: { UNKNOWN: 0 }, gpuType: { UNKNOWN: 0 } }
module.exports = CollectorUnavailable
