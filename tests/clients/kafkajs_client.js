// KafkaJS (a pure-JavaScript client with its own protocol code and consumer-group state
// machine) against weir (tests/it/kafka_clients/kafkajs.rs).
//
// Usage: node kafkajs_client.js MODES BOOTSTRAP, MODES a comma-separated list of admin,
// produce, groups, errors (or all of them: `all`), or failover (driven by the Rust test, which
// crashes a broker meanwhile). Works against one broker as against a cluster: topics get a
// replication factor of min(3, brokers). `kafkajs` is resolved through NODE_PATH
// (scripts/test.sh installs it under the target dir). Every check prints `OK <what>` or
// `FAIL <what>: <why>`; a mode runs all its checks, then the script prints `OK ALL` and exits
// 0 only when none failed.

'use strict'

const {
  Kafka, logLevel, CompressionTypes, ConfigResourceTypes, AssignerProtocol,
} = require('kafkajs')

const [mode, bootstrap] = process.argv.slice(2)
if (!mode || !bootstrap) {
  console.error('usage: kafkajs_client.js admin|produce|groups|errors|all|failover[,...] BOOTSTRAP')
  process.exit(2)
}

// How long any one wait for a condition may take.
const DEADLINE_MS = 20000
const RUN = `${process.pid}-${Date.now() % 100000}`

// KafkaJS's logs go to stderr, so stdout carries only the check lines.
const logCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  const json = JSON.stringify(extra, (_, v) => (typeof v === 'bigint' ? v.toString() : v))
  process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${json}\n`)
}

const kafka = new Kafka({
  clientId: 'weir-kafkajs-test',
  brokers: bootstrap.split(','),
  logLevel: process.env.KAFKAJS_LOG === 'debug' ? logLevel.DEBUG : logLevel.WARN,
  logCreator,
  connectionTimeout: 5000,
  requestTimeout: 15000,
  retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
})

let failures = 0

function ok(what) {
  console.log(`OK ${what}`)
}

function fail(what, why) {
  failures += 1
  console.log(`FAIL ${what}: ${why}`)
}

function assert(condition, why) {
  if (!condition) throw new Error(why)
}

function describe(e) {
  if (!(e instanceof Error)) return String(e)
  const parts = [`${e.name}: ${e.message}`]
  if (e.type) parts.push(`type=${e.type}`)
  const cause = e.cause || e.originalError
  if (cause && cause !== e) parts.push(`cause: ${describe(cause)}`)
  return parts.join(' ')
}

// Runs one named check; a failure is printed and counted, the mode goes on.
async function check(what, fn) {
  const start = Date.now()
  try {
    await fn()
    ok(`${what} (${Date.now() - start} ms)`)
  } catch (e) {
    fail(what, describe(e))
    if (process.env.KAFKAJS_STACK) console.error(e.stack)
  }
}

async function waitFor(what, fn, limitMs = DEADLINE_MS) {
  const deadline = Date.now() + limitMs
  let last
  for (;;) {
    try {
      const got = await fn()
      if (got) return got
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} not within ${limitMs} ms${last ? ` (last: ${describe(last)})` : ''}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

// The error type anywhere in a KafkaJS error's cause chain.
function errorTypes(e) {
  const types = []
  for (let x = e; x; x = x.cause || x.originalError) {
    if (x.type) types.push(x.type)
    for (const inner of x.errors || []) types.push(...errorTypes(inner))
    if (x === (x.cause || x.originalError)) break
  }
  return types
}

function sum(offsets) {
  return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0)
}

async function withAdmin(fn, retry) {
  const admin = kafka.admin(retry ? { retry } : {})
  await admin.connect()
  try {
    return await fn(admin)
  } finally {
    await admin.disconnect()
  }
}

// min(3, the cluster's brokers), set before the modes run.
let REPLICATION = 3

async function createTopic(admin, topic, numPartitions, replicationFactor = REPLICATION) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor }],
    waitForLeaders: true,
    timeout: 15000,
  })
  assert(created === true, `createTopics(${topic}) returned ${created}`)
}

// Every record of `topic` from the beginning, read by a consumer in a fresh group, so nothing
// committed interferes.
async function readAll(topic, expected) {
  const consumer = consumerOf(`readall-${topic}-${RUN}`)
  await consumer.connect()
  const got = []
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, ...message })
      },
    })
    await waitFor(`${expected} records of ${topic}`, () => got.length >= expected)
  } finally {
    await consumer.disconnect()
  }
  return got
}

// ---------------------------------------------------------------------------------- admin

async function admin() {
  await withAdmin(async (admin) => {
    const topic = `kjs-admin-${RUN}`

    await check('create topic validateOnly', async () => {
      // waitForLeaders would ask the metadata for a topic that validateOnly did not create.
      const res = await admin.createTopics({
        validateOnly: true,
        waitForLeaders: false,
        topics: [{ topic, numPartitions: 2, replicationFactor: REPLICATION }],
      })
      // KafkaJS returns false when it created nothing; the topic must not exist afterwards.
      const topics = await admin.listTopics()
      assert(!topics.includes(topic), `validateOnly created ${topic} (returned ${res})`)
    })

    await check('create topic', async () => {
      await createTopic(admin, topic, 2)
    })

    await check('create topic again returns false', async () => {
      const again = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] })
      assert(again === false, `second createTopics returned ${again}`)
    })

    await check('list topics', async () => {
      const topics = await admin.listTopics()
      assert(topics.includes(topic), `listTopics lacks ${topic}: ${topics}`)
    })

    await check('fetch topic metadata', async () => {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
      assert(topics.length === 1 && topics[0].name === topic, JSON.stringify(topics))
      const parts = topics[0].partitions
      assert(parts.length === 2, `${parts.length} partitions`)
      for (const p of parts) {
        assert(p.partitionErrorCode === 0, `partition ${p.partitionId} error ${p.partitionErrorCode}`)
        assert(p.replicas.length === REPLICATION && p.isr.length >= Math.min(2, REPLICATION),
          JSON.stringify(p))
        assert(p.replicas.includes(p.leader), `leader ${p.leader} not a replica`)
      }
    })

    await check('describe cluster', async () => {
      const cluster = await admin.describeCluster()
      const want = bootstrap.split(',').length
      assert(cluster.brokers.length === want, `${cluster.brokers.length} brokers, want ${want}`)
      assert(cluster.brokers.some((b) => b.nodeId === cluster.controller),
        `controller ${cluster.controller} not among the brokers`)
      assert(typeof cluster.clusterId === 'string' && cluster.clusterId.length > 0,
        `clusterId ${cluster.clusterId}`)
    })

    await check('create partitions', async () => {
      await admin.createPartitions({ topicPartitions: [{ topic, count: 4 }] })
      await waitFor('4 partitions in the metadata', async () => {
        const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
        return topics[0].partitions.length === 4
      })
    })

    await check('create partitions to fewer gives INVALID_PARTITIONS', async () => {
      try {
        await admin.createPartitions({ topicPartitions: [{ topic, count: 2 }] })
      } catch (e) {
        assert(errorTypes(e).includes('INVALID_PARTITIONS'), describe(e))
        return
      }
      throw new Error('shrinking the partition count succeeded')
    })

    await check('list partition reassignments', async () => {
      // Sent to the controller; weir never reassigns, so nothing is in progress.
      const res = await admin.listPartitionReassignments({ topics: [{ topic, partitions: [0, 1] }] })
      assert(Array.isArray(res.topics) && res.topics.length === 0, JSON.stringify(res))
    })

    await check('describe configs', async () => {
      const res = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      })
      const entries = res.resources[0].configEntries
      const retention = entries.find((e) => e.configName === 'retention.ms')
      assert(retention, `no retention.ms among ${entries.map((e) => e.configName)}`)
      assert(res.resources[0].errorCode === 0, `error ${res.resources[0].errorCode}`)
    })

    await check('alter configs', async () => {
      await admin.alterConfigs({
        validateOnly: false,
        resources: [{
          type: ConfigResourceTypes.TOPIC,
          name: topic,
          configEntries: [{ name: 'retention.ms', value: '3600000' }],
        }],
      })
      const res = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
      })
      const entry = res.resources[0].configEntries.find((e) => e.configName === 'retention.ms')
      assert(entry && entry.configValue === '3600000', `retention.ms is ${JSON.stringify(entry)}`)
      assert(entry.isDefault === false, 'an altered retention.ms is reported as the default')
    })

    await check('describe configs with synonyms', async () => {
      const res = await admin.describeConfigs({
        includeSynonyms: true,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms', 'cleanup.policy'] }],
      })
      const entries = res.resources[0].configEntries
      assert(entries.length === 2, `asked for 2 names, got ${entries.map((e) => e.configName)}`)
      const retention = entries.find((e) => e.configName === 'retention.ms')
      assert(retention.configSynonyms.length >= 1 &&
        retention.configSynonyms[0].configName === 'retention.ms' &&
        retention.configSynonyms[0].configValue === '3600000',
      `retention.ms synonyms ${JSON.stringify(retention.configSynonyms)}`)
    })

    await check('alter configs with an unknown name: INVALID_CONFIG', async () => {
      try {
        await admin.alterConfigs({
          resources: [{
            type: ConfigResourceTypes.TOPIC,
            name: topic,
            configEntries: [{ name: 'no.such.config', value: '1' }],
          }],
        })
      } catch (e) {
        assert(errorTypes(e).includes('INVALID_CONFIG'), describe(e))
        return
      }
      throw new Error('accepted')
    })

    await check('create topic with config entries', async () => {
      const compacted = `${topic}-compacted`
      await admin.createTopics({
        topics: [{
          topic: compacted,
          numPartitions: 1,
          replicationFactor: 1,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        }],
      })
      const res = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: compacted, configNames: ['cleanup.policy'] }],
      })
      const entry = res.resources[0].configEntries[0]
      assert(entry.configValue === 'compact', JSON.stringify(entry))
      await admin.deleteTopics({ topics: [compacted] })
    })

    await check('describe broker configs', async () => {
      const res = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.BROKER, name: '1' }],
      })
      assert(res.resources[0].configEntries.length > 0, 'no broker config entries')
    })

    // Records for the offset checks: 10 on partition 0 with timestamps t0, t0+1000, ...
    const t0 = Date.now() - 60000
    const producer = kafka.producer()
    await producer.connect()
    try {
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: 10 }, (_, i) => ({
          partition: 0,
          value: `v${i}`,
          timestamp: String(t0 + i * 1000),
        })),
      })
    } finally {
      await producer.disconnect()
    }

    await check('fetch topic offsets', async () => {
      const offsets = await admin.fetchTopicOffsets(topic)
      assert(offsets.length === 4, `${offsets.length} partitions`)
      const p0 = offsets.find((o) => o.partition === 0)
      assert(p0.high === '10' && p0.low === '0' && p0.offset === '10', JSON.stringify(p0))
    })

    await check('fetch topic offsets by timestamp', async () => {
      const at = await admin.fetchTopicOffsetsByTimestamp(topic, t0 + 3500)
      const p0 = at.find((o) => o.partition === 0)
      assert(p0 && p0.offset === '4', `offset for t0+3.5 s: ${JSON.stringify(at)}`)
      // A partition without records, and a time after every record: the log end offset.
      const later = await admin.fetchTopicOffsetsByTimestamp(topic, Date.now() + 3600000)
      assert(later.find((o) => o.partition === 0).offset === '10', JSON.stringify(later))
      assert(later.find((o) => o.partition === 1).offset === '0', JSON.stringify(later))
    })

    await check('delete records', async () => {
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '3' }] })
      const offsets = await admin.fetchTopicOffsets(topic)
      const p0 = offsets.find((o) => o.partition === 0)
      assert(p0.low === '3' && p0.high === '10', JSON.stringify(p0))
    })

    await check('delete records to the high-water mark (offset -1)', async () => {
      await producer.connect()
      await producer.send({ topic, acks: -1, messages: [{ partition: 3, value: 'a' }, { partition: 3, value: 'b' }] })
      await producer.disconnect()
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 3, offset: '-1' }] })
      const p3 = (await admin.fetchTopicOffsets(topic)).find((o) => o.partition === 3)
      assert(p3.low === '2' && p3.high === '2', JSON.stringify(p3))
    })

    // A group with committed offsets, consumed to the end, then stopped.
    const groupId = `kjs-admin-group-${RUN}`
    const consumer = consumerOf(groupId)
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    let consumed = 0
    await consumer.run({ eachMessage: async () => { consumed += 1 } })

    await check('list groups', async () => {
      await waitFor('the group in listGroups', async () => {
        const { groups } = await admin.listGroups()
        return groups.some((g) => g.groupId === groupId && g.protocolType === 'consumer')
      })
    })

    await check('describe groups', async () => {
      await waitFor('a stable group with one member', async () => {
        const { groups } = await admin.describeGroups([groupId])
        const g = groups[0]
        return g.errorCode === 0 && g.state === 'Stable' && g.members.length === 1 &&
          g.protocolType === 'consumer' && g.protocol === 'RoundRobinAssigner' &&
          g.members[0].memberAssignment.length > 0
      })
      const { groups } = await admin.describeGroups([groupId])
      const m = groups[0].members[0]
      assert(m.clientId === 'weir-kafkajs-test' && m.clientHost === '/127.0.0.1',
        `member client ${m.clientId} at ${m.clientHost}`)
      const assignment = AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
      assert(JSON.stringify(assignment.assignment[topic]) === '[0,1,2,3]',
        `decoded assignment ${JSON.stringify(assignment)}`)
    })

    await check('fetch offsets', async () => {
      await waitFor('7 records consumed', () => consumed === 7)
      await consumer.stop()
      await consumer.disconnect()
      const res = await admin.fetchOffsets({ groupId, topics: [topic] })
      const parts = res[0].partitions
      const p0 = parts.find((p) => p.partition === 0)
      assert(p0.offset === '10', `committed ${JSON.stringify(parts)}`)
      const p1 = parts.find((p) => p.partition === 1)
      assert(p1.offset === '-1', `partition 1 committed ${p1.offset}`)
    })

    await check('fetch offsets of every topic of the group', async () => {
      const res = await admin.fetchOffsets({ groupId })
      assert(res.length === 1 && res[0].topic === topic, JSON.stringify(res))
      const p0 = res[0].partitions.find((p) => p.partition === 0)
      assert(p0 && p0.offset === '10', JSON.stringify(res))
    })

    await check('describe a group that does not exist', async () => {
      const { groups } = await admin.describeGroups([`kjs-nogroup-${RUN}`])
      assert(groups[0].errorCode === 0 && groups[0].state === 'Dead' && groups[0].members.length === 0,
        JSON.stringify(groups[0]))
    })

    await check('set offsets', async () => {
      await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '5' }] })
      const res = await admin.fetchOffsets({ groupId, topics: [topic] })
      const p0 = res[0].partitions.find((p) => p.partition === 0)
      assert(p0.offset === '5', JSON.stringify(p0))
    })

    await check('reset offsets to earliest', async () => {
      // KafkaJS commits -2 (EARLIEST) as the offset, as Kafka stores it; resolveOffsets turns
      // it into the log start offset through ListOffsets.
      await admin.resetOffsets({ groupId, topic, earliest: true })
      const raw = await admin.fetchOffsets({ groupId, topics: [topic] })
      const p0 = raw[0].partitions.find((p) => p.partition === 0)
      assert(p0.offset === '-2', `after resetOffsets(earliest): ${JSON.stringify(p0)}`)
      const res = await admin.fetchOffsets({ groupId, topics: [topic], resolveOffsets: true })
      const r0 = res[0].partitions.find((p) => p.partition === 0)
      assert(r0.offset === '3', `resolved after resetOffsets(earliest): ${JSON.stringify(r0)}`)
    })

    await check('delete a group that does not exist: GROUP_ID_NOT_FOUND', async () => {
      try {
        await admin.deleteGroups([`kjs-nogroup-${RUN}`])
      } catch (e) {
        const types = [...errorTypes(e), ...(e.groups || []).map((g) => g.error && g.error.type)]
        assert(types.includes('GROUP_ID_NOT_FOUND'), `${describe(e)} ${JSON.stringify(e.groups)}`)
        return
      }
      throw new Error('deleted')
    })

    await check('delete groups', async () => {
      const res = await admin.deleteGroups([groupId])
      assert(res[0].groupId === groupId && res[0].errorCode === 0, JSON.stringify(res))
      const { groups } = await admin.listGroups()
      assert(!groups.some((g) => g.groupId === groupId), 'the deleted group is still listed')
    })

    await check('delete topics', async () => {
      await admin.deleteTopics({ topics: [topic], timeout: 15000 })
      await waitFor('the topic gone from listTopics', async () => {
        const topics = await admin.listTopics()
        return !topics.includes(topic)
      })
    })
  })
}

// -------------------------------------------------------------------------------- produce

async function produce() {
  await withAdmin(async (admin) => {
    const topic = `kjs-produce-${RUN}`
    await createTopic(admin, topic, 3)
    const producer = kafka.producer({ allowAutoTopicCreation: false })
    await producer.connect()
    let sent = 0
    try {
      for (const acks of [-1, 1]) {
        await check(`produce acks=${acks}`, async () => {
          const res = await producer.send({
            topic,
            acks,
            messages: Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: `acks${acks}-${i}` })),
          })
          assert(res.every((r) => r.errorCode === 0), JSON.stringify(res))
          assert(res.length >= 1, `no partition results: ${JSON.stringify(res)}`)
          sent += 30
        })
      }

      await check('produce acks=0', async () => {
        // KafkaJS gets no response for acks=0; the records still arrive.
        await producer.send({
          topic,
          acks: 0,
          messages: [{ key: 'zero', value: 'acks0' }],
        })
        sent += 1
      })

      await check('keys route to one partition', async () => {
        const res = await producer.send({
          topic,
          messages: Array.from({ length: 5 }, () => ({ key: 'same-key', value: 'same' })),
        })
        assert(res.length === 1, `same key landed on ${res.length} partitions`)
        sent += 5
      })

      await check('headers', async () => {
        await producer.send({
          topic,
          messages: [{
            partition: 1,
            key: 'h',
            value: 'with-headers',
            headers: { 'trace-id': 'abc', bin: Buffer.from([0, 1, 2, 255]), multi: ['x', 'y'] },
          }],
        })
        sent += 1
      })

      await check('null key and value', async () => {
        await producer.send({ topic, messages: [{ partition: 2, key: null, value: null }] })
        sent += 1
      })

      await check('compression gzip', async () => {
        const res = await producer.send({
          topic,
          compression: CompressionTypes.GZIP,
          messages: Array.from({ length: 50 }, (_, i) => ({
            partition: 0,
            key: `gz${i}`,
            value: `gzip-${i}-`.repeat(20),
          })),
        })
        assert(res[0].errorCode === 0, JSON.stringify(res))
        sent += 50
      })
    } finally {
      await producer.disconnect()
    }

    await check('idempotent producer', async () => {
      const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
      await idem.connect()
      try {
        for (let batch = 0; batch < 5; batch++) {
          const res = await idem.send({
            topic,
            acks: -1,
            messages: Array.from({ length: 20 }, (_, i) => ({
              partition: 2,
              key: `idem-${batch}-${i}`,
              value: `idem-${batch}-${i}`,
            })),
          })
          assert(res[0].errorCode === 0, JSON.stringify(res))
        }
        sent += 100
      } finally {
        await idem.disconnect()
      }
    })

    await check('read back everything', async () => {
      const got = await readAll(topic, sent)
      assert(got.length === sent, `read ${got.length}, sent ${sent}`)
      const h = got.find((m) => m.value && m.value.toString() === 'with-headers')
      assert(h, 'the record with headers is missing')
      assert(h.headers['trace-id'].toString() === 'abc', `trace-id ${h.headers['trace-id']}`)
      assert(Buffer.compare(h.headers.bin, Buffer.from([0, 1, 2, 255])) === 0, 'binary header')
      const multi = h.headers.multi.map((b) => b.toString())
      assert(JSON.stringify(multi) === '["x","y"]', `repeated header ${multi}`)
      const nulls = got.filter((m) => m.key === null && m.value === null)
      assert(nulls.length === 1, `${nulls.length} null/null records`)
      const gz = got.filter((m) => m.key && m.key.toString().startsWith('gz'))
      assert(gz.length === 50 && gz.every((m, i) => m.value.toString() === `gzip-${i}-`.repeat(20)),
        'gzip records differ')
      const idem = got.filter((m) => m.key && m.key.toString().startsWith('idem-'))
      assert(idem.length === 100, `${idem.length} idempotent records`)
      idem.forEach((m, i) => assert(m.key.toString() === `idem-${Math.floor(i / 20)}-${i % 20}`,
        `idempotent record ${i} is ${m.key}`))
      const offsets = await admin.fetchTopicOffsets(topic)
      assert(sum(offsets) === sent, `offsets count ${sum(offsets)}`)
    })
  })
}

// --------------------------------------------------------------------------------- groups

function consumerOf(groupId) {
  return kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 300,
    maxWaitTimeInMs: 200,
  })
}

async function produceValues(topic, from, to, partitions) {
  const producer = kafka.producer()
  await producer.connect()
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: Array.from({ length: to - from }, (_, i) => ({
        partition: (from + i) % partitions,
        value: String(from + i),
      })),
    })
  } finally {
    await producer.disconnect()
  }
}

async function groups() {
  await withAdmin(async (admin) => {
    const topic = `kjs-groups-${RUN}`
    const partitions = 4
    await createTopic(admin, topic, partitions)
    await produceValues(topic, 0, 200, partitions)
    const groupId = `kjs-group-${RUN}`

    // Two members of one group, one with eachMessage and one with eachBatch.
    const seen = new Map() // value -> how many times consumed
    const byMember = [new Set(), new Set()]
    const assigned = [[], []]
    const members = [consumerOf(groupId), consumerOf(groupId)]
    members.forEach((c, i) => {
      c.on(c.events.GROUP_JOIN, (e) => {
        assigned[i] = (e.payload.memberAssignment[topic] || []).slice().sort()
      })
    })
    const record = (i, partition, message) => {
      const v = message.value.toString()
      seen.set(v, (seen.get(v) || 0) + 1)
      byMember[i].add(partition)
    }
    await members[0].connect()
    await members[0].subscribe({ topics: [topic], fromBeginning: true })
    await members[0].run({
      eachMessage: async ({ partition, message }) => record(0, partition, message),
    })
    await check('first member joins, gets every partition and commits what it read', async () => {
      await waitFor('4 partitions assigned', () => assigned[0].length === partitions)
      await waitFor('200 records', () => seen.size === 200)
      // Committed before the second member joins: no record of these can be read twice.
      await waitFor('committed offsets summing to 200', async () => {
        const res = await admin.fetchOffsets({ groupId, topics: [topic] })
        return res[0].partitions.reduce((n, p) => n + Number(p.offset), 0) === 200
      })
    })
    await members[1].connect()
    await members[1].subscribe({ topics: [topic], fromBeginning: true })
    await members[1].run({
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch, heartbeat }) => {
        for (const message of batch.messages) record(1, batch.partition, message)
        await heartbeat()
      },
    })

    await check('rebalance splits the partitions between both members', async () => {
      await waitFor('2 + 2 partitions', () =>
        assigned[0].length === 2 && assigned[1].length === 2 &&
        new Set([...assigned[0], ...assigned[1]]).size === partitions)
    })

    await check('each record consumed once by the group', async () => {
      await produceValues(topic, 200, 400, partitions)
      await waitFor('400 distinct records', () => seen.size === 400)
      const dups = [...seen.entries()].filter(([, n]) => n > 1)
      assert(dups.length === 0, `${dups.length} records consumed twice, e.g. ${dups.slice(0, 5)}`)
      assert(byMember[1].size > 0, 'the eachBatch member consumed nothing')
    })

    await check('commits reach the coordinator', async () => {
      await waitFor('committed offsets summing to 400', async () => {
        const res = await admin.fetchOffsets({ groupId, topics: [topic] })
        return res[0].partitions.reduce((n, p) => n + Number(p.offset), 0) === 400
      })
    })

    await check('both members leave', async () => {
      await Promise.all(members.map((c) => c.disconnect()))
      await waitFor('an empty group', async () => {
        const { groups } = await admin.describeGroups([groupId])
        return groups[0].state === 'Empty' && groups[0].members.length === 0
      })
    })

    await check('a restarted consumer resumes from the committed offsets', async () => {
      await produceValues(topic, 400, 440, partitions)
      const again = consumerOf(groupId)
      const values = []
      await again.connect()
      try {
        await again.subscribe({ topics: [topic], fromBeginning: true })
        await again.run({
          eachMessage: async ({ message }) => { values.push(Number(message.value.toString())) },
        })
        // A re-read of committed records would come before the new ones of its partition.
        await waitFor('40 new records', () => values.length >= 40)
        assert(values.length === 40 && values.every((v) => v >= 400),
          `read ${values.length} records, min ${Math.min(...values)}`)
      } finally {
        await again.disconnect()
      }
    })

    await check('seek', async () => {
      const c = consumerOf(`kjs-seek-${RUN}`)
      const values = []
      await c.connect()
      try {
        await c.subscribe({ topics: [topic], fromBeginning: true })
        let sought = false
        await c.run({
          eachMessage: async ({ partition, message }) => {
            if (partition === 0) values.push({ offset: Number(message.offset), sought })
          },
        })
        // Partition 0 holds 110 records (offsets 0..109).
        await waitFor('partition 0 read to its end', () => values.length >= 110)
        sought = true
        c.seek({ topic, partition: 0, offset: '100' })
        await waitFor('partition 0 read again from 100', () =>
          values.filter((v) => v.sought).length >= 10)
        const after = values.filter((v) => v.sought).map((v) => v.offset)
        assert(after[0] === 100 && after.length === 10, `after seek: ${after}`)
      } finally {
        await c.disconnect()
      }
    })

    await check('pause and resume', async () => {
      const c = consumerOf(`kjs-pause-${RUN}`)
      const byPartition = new Map()
      await c.connect()
      try {
        await c.subscribe({ topics: [topic], fromBeginning: true })
        await c.run({
          eachMessage: async ({ partition }) => {
            byPartition.set(partition, (byPartition.get(partition) || 0) + 1)
          },
        })
        await waitFor('440 records', () =>
          [...byPartition.values()].reduce((a, b) => a + b, 0) === 440)
        c.pause([{ topic, partitions: [1] }])
        assert(c.paused().some((t) => t.topic === topic && t.partitions.includes(1)),
          `paused(): ${JSON.stringify(c.paused())}`)
        const before = byPartition.get(1)
        await produceValues(topic, 440, 480, partitions)
        await waitFor('partitions 0, 2, 3 get their new records', () =>
          byPartition.get(0) === 120 && byPartition.get(2) === 120 && byPartition.get(3) === 120)
        assert(byPartition.get(1) === before, 'a paused partition was consumed')
        c.resume([{ topic, partitions: [1] }])
        await waitFor('partition 1 after resume', () => byPartition.get(1) === 120)
      } finally {
        await c.disconnect()
      }
    })
  })
}

// --------------------------------------------------------------------------------- errors

async function errors() {
  await check('produce to a missing topic without auto-creation: UNKNOWN_TOPIC_OR_PARTITION', async () => {
    const producer = kafka.producer({
      allowAutoTopicCreation: false,
      retry: { retries: 1, initialRetryTime: 100 },
    })
    await producer.connect()
    try {
      await producer.send({ topic: `kjs-missing-${RUN}`, messages: [{ value: 'x' }] })
      throw new Error('the send succeeded')
    } catch (e) {
      assert(errorTypes(e).includes('UNKNOWN_TOPIC_OR_PARTITION'), describe(e))
    } finally {
      await producer.disconnect()
    }
    await withAdmin(async (admin) => {
      const topics = await admin.listTopics()
      assert(!topics.includes(`kjs-missing-${RUN}`), 'the topic was created')
    })
  })

  await check('produce to a missing topic auto-creates it by default', async () => {
    const producer = kafka.producer()
    await producer.connect()
    try {
      const res = await producer.send({ topic: `kjs-auto-${RUN}`, messages: [{ value: 'x' }] })
      assert(res[0].errorCode === 0 && res[0].baseOffset === '0', JSON.stringify(res))
    } finally {
      await producer.disconnect()
    }
  })

  await withAdmin(async (admin) => {
    await createTopic(admin, `kjs-onepart-${RUN}`, 1)
  })

  await check('produce with acks=2: INVALID_REQUIRED_ACKS', async () => {
    const producer = kafka.producer({ retry: { retries: 0 } })
    await producer.connect()
    try {
      await producer.send({ topic: `kjs-onepart-${RUN}`, acks: 2, messages: [{ value: 'x' }] })
      throw new Error('the send succeeded')
    } catch (e) {
      assert(errorTypes(e).includes('INVALID_REQUIRED_ACKS'), describe(e))
    } finally {
      await producer.disconnect()
    }
  })

  await check('produce a record above max.message.bytes: MESSAGE_TOO_LARGE', async () => {
    await withAdmin(async (admin) => {
      await admin.alterConfigs({
        resources: [{
          type: ConfigResourceTypes.TOPIC,
          name: `kjs-onepart-${RUN}`,
          configEntries: [{ name: 'max.message.bytes', value: '2000' }],
        }],
      })
    })
    const producer = kafka.producer({ retry: { retries: 0 } })
    await producer.connect()
    try {
      await producer.send({ topic: `kjs-onepart-${RUN}`, messages: [{ value: Buffer.alloc(5000, 7) }] })
      throw new Error('the send succeeded')
    } catch (e) {
      const types = errorTypes(e)
      assert(types.includes('MESSAGE_TOO_LARGE') || types.includes('RECORD_LIST_TOO_LARGE'), describe(e))
    } finally {
      await producer.disconnect()
    }
  })

  await check('a consumer seeking past the end restarts from its reset policy', async () => {
    const topic = `kjs-onepart-${RUN}`
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({ topic, messages: [{ value: 'a' }, { value: 'b' }] })
    await producer.disconnect()
    const c = consumerOf(`kjs-oor-${RUN}`)
    const offsets = []
    await c.connect()
    try {
      await c.subscribe({ topics: [topic], fromBeginning: true })
      await c.run({ eachMessage: async ({ message }) => { offsets.push(Number(message.offset)) } })
      await waitFor('2 records', () => offsets.length === 2)
      c.seek({ topic, partition: 0, offset: '1000' })
      // OFFSET_OUT_OF_RANGE, then the reset to the earliest offset: both records again.
      await waitFor('both records again', () => offsets.length === 4)
      assert(JSON.stringify(offsets) === '[0,1,0,1]', `offsets ${offsets}`)
    } finally {
      await c.disconnect()
    }
  })

  await check('session timeout below group.min.session.timeout.ms: INVALID_SESSION_TIMEOUT', async () => {
    const c = kafka.consumer({ groupId: `kjs-badsession-${RUN}`, sessionTimeout: 100, heartbeatInterval: 50, retry: { retries: 0 } })
    await c.connect()
    try {
      await c.subscribe({ topics: [`kjs-onepart-${RUN}`] })
      let crash
      c.on(c.events.CRASH, (e) => { crash = e.payload.error })
      await c.run({ eachMessage: async () => {} }).catch((e) => { crash = e })
      await waitFor('the consumer to crash', () => crash)
      assert(errorTypes(crash).includes('INVALID_SESSION_TIMEOUT'), describe(crash))
    } finally {
      await c.disconnect()
    }
  })

  await check('create a topic with an invalid name: INVALID_TOPIC_EXCEPTION', async () => {
    await withAdmin(async (admin) => {
      try {
        await admin.createTopics({ topics: [{ topic: 'bad name!' }] })
      } catch (e) {
        assert(errorTypes(e).includes('INVALID_TOPIC_EXCEPTION'), describe(e))
        return
      }
      throw new Error('created')
    })
  })

  await check('create partitions of a missing topic: UNKNOWN_TOPIC_OR_PARTITION', async () => {
    await withAdmin(async (admin) => {
      try {
        await admin.createPartitions({ topicPartitions: [{ topic: `kjs-nothere-${RUN}`, count: 3 }] })
      } catch (e) {
        assert(errorTypes(e).includes('UNKNOWN_TOPIC_OR_PARTITION'), describe(e))
        return
      }
      throw new Error('created')
    })
  })

  await check('create an existing topic: TOPIC_ALREADY_EXISTS is not an error', async () => {
    await withAdmin(async (admin) => {
      const again = await admin.createTopics({ topics: [{ topic: `kjs-onepart-${RUN}` }] })
      assert(again === false, `returned ${again}`)
    })
  })

  await check('create with replication factor above the broker count: INVALID_REPLICATION_FACTOR', async () => {
    await withAdmin(async (admin) => {
      try {
        await admin.createTopics({ topics: [{ topic: `kjs-rf-${RUN}`, replicationFactor: 9 }] })
      } catch (e) {
        assert(errorTypes(e).includes('INVALID_REPLICATION_FACTOR'), describe(e))
        return
      }
      throw new Error('created')
    })
  })

  await check('delete a missing topic: UNKNOWN_TOPIC_OR_PARTITION', async () => {
    await withAdmin(async (admin) => {
      try {
        await admin.deleteTopics({ topics: [`kjs-nothere-${RUN}`], timeout: 5000 })
      } catch (e) {
        assert(errorTypes(e).includes('UNKNOWN_TOPIC_OR_PARTITION'), describe(e))
        return
      }
      throw new Error('deleted')
    }, { retries: 1 })
  })

  await check('fetch offsets of a missing topic', async () => {
    await withAdmin(async (admin) => {
      try {
        await admin.fetchTopicOffsets(`kjs-nothere-${RUN}`)
      } catch (e) {
        assert(errorTypes(e).includes('UNKNOWN_TOPIC_OR_PARTITION'), describe(e))
        return
      }
      throw new Error('answered')
    }, { retries: 1 })
  })
}

// ------------------------------------------------------------------------------- failover

// Driven by tests/it/kafka_clients/kafkajs.rs, which crashes and restarts a broker meanwhile:
// an idempotent producer (acks=-1) sends batches of 20 keyed records, one partition per send,
// and prints `acked N` as they are acknowledged, until a `stop` line on stdin; a group member
// consumes alongside. Then every acknowledged record must be in the log exactly once and
// consumed. (One partition per send: KafkaJS 2.2.4 retries a multi-broker send only on the
// brokers that have not answered yet, so a partition whose leader moved to one that has would
// not be sent again; and it partitions keyless records afresh on each retry, which changes
// the batch a retried sequence number covers.)
async function failover() {
  const topic = 'kjs-failover'
  const partitions = 3
  let stop = false
  process.stdin.on('data', (d) => { if (d.toString().includes('stop')) stop = true })
  process.stdin.on('end', () => { stop = true })
  await withAdmin(async (admin) => {
    await createTopic(admin, topic, partitions)
    console.log(`TOPIC ${topic}`)
    const seen = new Set()
    const consumer = consumerOf(`${topic}-group`)
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({ eachMessage: async ({ message }) => { seen.add(message.value.toString()) } })
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
    })
    await producer.connect()
    let acked = 0
    const deadline = Date.now() + 60000
    await check('idempotent sends ride out the broker crash', async () => {
      while (!stop && Date.now() < deadline) {
        const partition = (acked / 20) % partitions
        await producer.send({
          topic,
          acks: -1,
          messages: Array.from({ length: 20 }, (_, i) => ({
            partition,
            key: `k${acked + i}`,
            value: String(acked + i),
          })),
        })
        acked += 20
        if (acked % 200 === 0) console.log(`acked ${acked}`)
      }
      assert(stop, 'no `stop` within 60 s')
    })
    await producer.disconnect()
    await check('every acknowledged record is in the log exactly once', async () => {
      const offsets = await admin.fetchTopicOffsets(topic)
      assert(sum(offsets) === acked, `the log holds ${sum(offsets)} records, ${acked} acknowledged`)
    })
    await check('the group member consumed every acknowledged record', async () => {
      await waitFor(`${acked} distinct records`, () => seen.size >= acked, 40000)
      for (let i = 0; i < acked; i++) assert(seen.has(String(i)), `record ${i} was not consumed`)
    })
    await consumer.disconnect()
    console.log(`failover: ${acked} records acknowledged`)
  })
}

// ----------------------------------------------------------------------------------- main

const modes = { admin, produce, groups, errors }

async function main() {
  const run = mode === 'all' ? Object.keys(modes) : mode.split(',')
  modes.failover = failover
  await withAdmin(async (admin) => {
    const { brokers } = await admin.describeCluster()
    REPLICATION = Math.min(3, brokers.length)
  })
  for (const m of run) {
    if (!modes[m]) throw new Error(`unknown mode ${m}`)
    const start = Date.now()
    await modes[m]()
    console.log(`mode ${m} took ${Date.now() - start} ms`)
  }
}

main().then(
  () => {
    if (failures > 0) {
      console.log(`FAILED ${failures} checks`)
      process.exit(1)
    }
    console.log('OK ALL')
    process.exit(0)
  },
  (e) => {
    console.log(`FAIL ${mode}: ${describe(e)}`)
    console.error(e.stack)
    process.exit(1)
  },
)
