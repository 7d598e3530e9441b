// Decode a Puente delivery topic with Apache Avro (Java) and only the exported .avsc files.
//
//   java -cp 'lib/*' Consumer.java --schemas DIR --topic hub.out.<recipient>.<event_type>
//
// Each value is Avro single-object encoding: C3 01, the CRC-64-AVRO fingerprint of the
// writer schema's Parsing Canonical Form (8 bytes, little-endian), the body. Java's
// SchemaNormalization.parsingFingerprint64 computes the same number, so the lookup table
// comes from the files. Connection settings come from the environment:
// KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE. One JSON line is printed
// per delivery; the exit code is 1 if one had no exported schema.

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class Consumer {
    record Known(String file, Schema schema) {}

    public static void main(String[] args) throws IOException {
        String schemas = null, topic = null;
        long idleMs = 5000;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--schemas" -> schemas = args[i + 1];
                case "--topic" -> topic = args[i + 1];
                case "--idle-ms" -> idleMs = Long.parseLong(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        if (schemas == null || topic == null) {
            System.err.println("usage: Consumer --schemas DIR --topic TOPIC [--idle-ms N]");
            System.exit(2);
        }
        Map<Long, Known> known = schemasByFingerprint(new File(schemas));
        int missing = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(properties())) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long idleSince = System.currentTimeMillis();
            while (System.currentTimeMillis() - idleSince < idleMs) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    idleSince = System.currentTimeMillis();
                    missing += decode(record, known) ? 0 : 1;
                }
            }
        }
        System.exit(missing == 0 ? 0 : 1);
    }

    static Map<Long, Known> schemasByFingerprint(File folder) throws IOException {
        Map<Long, Known> found = new HashMap<>();
        File[] files = folder.listFiles((dir, name) -> name.endsWith(".avsc"));
        if (files == null) {
            throw new IOException("no such folder: " + folder);
        }
        for (File file : files) {
            // One parser per file: each file is self-contained and defines its own types.
            Schema schema = new Schema.Parser().parse(file);
            found.put(SchemaNormalization.parsingFingerprint64(schema), new Known(file.getName(), schema));
        }
        return found;
    }

    static boolean decode(ConsumerRecord<byte[], byte[]> record, Map<Long, Known> known)
            throws IOException {
        byte[] value = record.value();
        if (value == null || value.length < 10 || value[0] != (byte) 0xC3 || value[1] != 0x01) {
            System.err.println("not Avro single-object encoding at offset " + record.offset());
            return false;
        }
        long fingerprint = ByteBuffer.wrap(value, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        Known schema = known.get(fingerprint);
        if (schema == null) {
            System.err.printf("no exported schema has fingerprint %016x%n", Long.reverseBytes(fingerprint));
            return false;
        }
        GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema.schema());
        GenericRecord event = reader.read(null,
                DecoderFactory.get().binaryDecoder(value, 10, value.length - 10, null));
        System.out.println("{\"topic\": " + quote(record.topic())
                + ", \"offset\": " + record.offset()
                + ", \"ce_id\": " + quote(header(record, "ce_id"))
                + ", \"ce_dataschema\": " + quote(header(record, "ce_dataschema"))
                + ", \"schema_file\": " + quote(schema.file())
                + ", \"event\": " + GenericData.get().toString(event) + "}");
        return true;
    }

    static String header(ConsumerRecord<byte[], byte[]> record, String name) {
        Header header = record.headers().lastHeader(name);
        return header == null ? null : new String(header.value(), StandardCharsets.UTF_8);
    }

    static String quote(String text) {
        if (text == null) {
            return "null";
        }
        return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static Properties properties() {
        Map<String, String> env = System.getenv();
        Properties props = new Properties();
        props.put("bootstrap.servers", env.get("KAFKA_BOOTSTRAP_SERVERS"));
        props.put("security.protocol", env.getOrDefault("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"));
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        props.put("enable.auto.commit", "false");
        String mechanism = env.get("KAFKA_SASL_MECHANISM");
        if (mechanism != null && !mechanism.isEmpty()) {
            props.put("sasl.mechanism", mechanism);
            String module = mechanism.startsWith("SCRAM")
                    ? "org.apache.kafka.common.security.scram.ScramLoginModule"
                    : "org.apache.kafka.common.security.plain.PlainLoginModule";
            props.put("sasl.jaas.config", module + " required username=" + quote(env.get("KAFKA_SASL_USERNAME"))
                    + " password=" + quote(env.get("KAFKA_SASL_PASSWORD")) + ";");
        }
        String ca = env.get("KAFKA_SSL_CAFILE");
        if (ca != null && !ca.isEmpty()) {
            props.put("ssl.truststore.type", "PEM");
            props.put("ssl.truststore.location", ca);
        }
        return props;
    }
}
