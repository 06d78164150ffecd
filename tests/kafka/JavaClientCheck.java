// The Java Kafka client (kafka-clients 4.1.1, from deps/maven/kafka-broker: the client Spark's Kafka source is
// built on) against an endpoint: an idempotent producer (the Java default) sends keyed records with headers, a
// consumer in a group reads them all, commits, and a second consumer of the group finds the committed offsets.
// Prints one "key=value" line per fact for tests/kafka/test_kafka_java.py. Bounded: every wait has a deadline.
//
//   java -cp <jars>:<classes> JavaClientCheck BOOTSTRAP TOPIC PASSWORD COUNT

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class JavaClientCheck {
    static Properties common(String bootstrap, String password) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "PLAIN");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required "
                + "username=\"$ConnectionString\" password=\"" + password.replace("\"", "\\\"") + "\";");
        p.put("request.timeout.ms", "30000");
        return p;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], password = args[2];
        int count = Integer.parseInt(args[3]);
        Properties pp = common(bootstrap, password);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "gzip");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < count; i++) {
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic,
                        ("sensor-" + (i % 7)).getBytes(StandardCharsets.UTF_8),
                        ("java-" + i).getBytes(StandardCharsets.UTF_8));
                record.headers().add("index", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                sent.add(producer.send(record));
            }
            producer.flush();
        }
        Map<Integer, Integer> perPartition = new TreeMap<>();
        for (Future<RecordMetadata> f : sent) {
            perPartition.merge(f.get().partition(), 1, Integer::sum);
        }
        System.out.println("produced=" + sent.size());

        Properties cp = common(bootstrap, password);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, "java-" + topic);
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Set<String> values = new HashSet<>();
        boolean headersOk = true;
        boolean ordered = true;
        Map<Integer, Long> lastOffset = new TreeMap<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (values.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    String value = new String(r.value(), StandardCharsets.UTF_8);
                    values.add(value);
                    String index = new String(r.headers().lastHeader("index").value(), StandardCharsets.UTF_8);
                    headersOk &= value.equals("java-" + index);
                    Long last = lastOffset.get(r.partition());
                    ordered &= last == null ? r.offset() == 0 : r.offset() == last + 1;
                    lastOffset.put(r.partition(), r.offset());
                }
            }
            consumer.commitSync(Duration.ofSeconds(30));
        }
        System.out.println("consumed=" + values.size());
        System.out.println("headers_ok=" + headersOk);
        System.out.println("offsets_contiguous=" + ordered);

        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "second");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
            Set<TopicPartition> partitions = new HashSet<>();
            for (int p : perPartition.keySet()) {
                partitions.add(new TopicPartition(topic, p));
            }
            long committed = 0;
            for (OffsetAndMetadata o : consumer.committed(partitions, Duration.ofSeconds(30)).values()) {
                committed += o == null ? 0 : o.offset();
            }
            System.out.println("committed=" + committed);
            Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, Duration.ofSeconds(30));
            System.out.println("end_offsets=" + ends.values().stream().mapToLong(Long::longValue).sum());
        }
    }
}
