// PgJDBC against a running Tributary: typed values through PreparedStatements (reused past the
// prepare threshold, so the driver switches to named server-side statements and binary
// transfer), and the DatabaseMetaData calls DBeaver, DataGrip, Metabase and Tableau make.
//
//     java -cp "$(scripts/java-classpath)" tests/clients/java/ClientTest.java 6570
//
// Exits non-zero, naming the failing check, on the first difference.

import java.math.BigDecimal;
import java.sql.CallableStatement;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Properties;

import org.postgresql.PGConnection;
import org.postgresql.util.PGInterval;
import org.postgresql.util.PGobject;

public class ClientTest {
    static void check(String what, Object actual, Object expected) {
        if (!Objects.equals(actual, expected)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    static List<String> column(ResultSet rows, String name) throws Exception {
        List<String> values = new ArrayList<>();
        while (rows.next()) {
            values.add(rows.getString(name));
        }
        return values;
    }

    public static void main(String[] arguments) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + arguments[0] + "/tributary";
        Properties properties = new Properties();
        properties.setProperty("user", "tester");
        // The default threshold (5) also works; 2 makes the switch to named statements early.
        properties.setProperty("prepareThreshold", "2");
        try (Connection connection = DriverManager.getConnection(url, properties)) {
            try (Statement statement = connection.createStatement()) {
                statement.execute("CREATE TABLE readings (i INT, b BIGINT, n NUMERIC(10, 2), "
                        + "d DOUBLE PRECISION, t TEXT, flag BOOLEAN, at TIMESTAMP, "
                        + "at_utc TIMESTAMPTZ, day DATE, span INTERVAL)");
                statement.execute("CREATE MATERIALIZED VIEW per_text AS "
                        + "SELECT t, count(*) AS n, sum(b) AS total FROM readings GROUP BY t");
                statement.execute("CREATE VIEW positive AS SELECT i, d FROM readings WHERE d > 0");
                statement.execute("CREATE TABLE accounts (region TEXT, id BIGINT, email TEXT "
                        + "UNIQUE, PRIMARY KEY (region, id))");
            }
            OffsetDateTime utc = OffsetDateTime.of(2026, 1, 2, 3, 4, 5, 0, ZoneOffset.UTC);
            try (PreparedStatement insert = connection.prepareStatement(
                    "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 4; i++) {
                    insert.setInt(1, i);
                    insert.setLong(2, 9_000_000_000L + i);
                    insert.setBigDecimal(3, new BigDecimal("12.50"));
                    insert.setDouble(4, 2.5 * i);
                    insert.setString(5, i % 2 == 0 ? "even" : "odd");
                    insert.setBoolean(6, i > 2);
                    insert.setTimestamp(7, Timestamp.valueOf("2026-01-02 03:04:05"));
                    insert.setObject(8, utc);
                    insert.setDate(9, Date.valueOf("2026-01-02"));
                    insert.setObject(10, new PGInterval("1 day 02:00:00"));
                    check("insert count", insert.executeUpdate(), 1);
                }
            }
            try (PreparedStatement select = connection.prepareStatement(
                    "SELECT i, b, n, d, t, flag, at, at_utc, day, span FROM readings WHERE i = ?")) {
                for (int round = 0; round < 6; round++) {
                    int i = round % 4 + 1;
                    select.setInt(1, i);
                    try (ResultSet rows = select.executeQuery()) {
                        check("row exists", rows.next(), true);
                        check("int", rows.getInt(1), i);
                        check("bigint", rows.getLong(2), 9_000_000_000L + i);
                        check("numeric", rows.getBigDecimal(3), new BigDecimal("12.50"));
                        check("double", rows.getDouble(4), 2.5 * i);
                        check("text", rows.getString(5), i % 2 == 0 ? "even" : "odd");
                        check("bool", rows.getBoolean(6), i > 2);
                        check("timestamp", rows.getTimestamp(7),
                                Timestamp.valueOf("2026-01-02 03:04:05"));
                        check("timestamptz",
                                rows.getObject(8, OffsetDateTime.class).toInstant(),
                                utc.toInstant());
                        check("date", rows.getDate(9).toString(), "2026-01-02");
                        PGInterval span = (PGInterval) rows.getObject(10);
                        check("interval days", span.getDays(), 1);
                        check("interval hours", span.getHours(), 2);
                        check("one row", rows.next(), false);
                    }
                }
                check("server-side prepared",
                        select.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(), true);
            }
            try (PreparedStatement view = connection.prepareStatement(
                    "SELECT n, total FROM per_text WHERE t = ?")) {
                for (int round = 0; round < 4; round++) {
                    view.setString(1, "odd");
                    try (ResultSet rows = view.executeQuery()) {
                        check("view row", rows.next(), true);
                        check("view count", rows.getLong(1), 2L);
                        check("view sum", rows.getBigDecimal(2),
                                new BigDecimal(9_000_000_000L * 2 + 1 + 3));
                    }
                }
            }

            // jsonb: bound as a PGobject of type jsonb (and as text cast to jsonb), read back as
            // a PGobject holding the canonical text, described as jsonb to metadata readers.
            try (Statement statement = connection.createStatement()) {
                statement.execute("CREATE TABLE documents (id INT, doc JSONB)");
            }
            try (PreparedStatement insert = connection.prepareStatement(
                    "INSERT INTO documents VALUES (?, ?)")) {
                PGobject document = new PGobject();
                document.setType("jsonb");
                document.setValue("{\"tags\": [\"a\"], \"id\": 1}");
                insert.setInt(1, 1);
                insert.setObject(2, document);
                check("jsonb insert", insert.executeUpdate(), 1);
            }
            try (PreparedStatement insert = connection.prepareStatement(
                    "INSERT INTO documents VALUES (?, ?::jsonb)")) {
                insert.setInt(1, 2);
                insert.setString(2, "{\"tags\": []}");
                check("jsonb insert from text", insert.executeUpdate(), 1);
            }
            try (PreparedStatement select = connection.prepareStatement(
                    "SELECT doc, doc ->> 'id' FROM documents WHERE doc @> ?::jsonb ORDER BY id")) {
                for (int round = 0; round < 4; round++) {
                    select.setString(1, "{\"tags\": [\"a\"]}");
                    try (ResultSet rows = select.executeQuery()) {
                        check("jsonb type name", rows.getMetaData().getColumnTypeName(1), "jsonb");
                        check("jsonb row", rows.next(), true);
                        PGobject read = (PGobject) rows.getObject(1);
                        check("jsonb object type", read.getType(), "jsonb");
                        check("jsonb value", read.getValue(), "{\"id\": 1, \"tags\": [\"a\"]}");
                        check("jsonb ->>", rows.getString(2), "1");
                        check("one jsonb row", rows.next(), false);
                    }
                }
            }

            // setArray: the driver binds the array as _int8 (binary once the statement is
            // prepared on the server) and _text.
            try (PreparedStatement any = connection.prepareStatement(
                    "SELECT count(*) FROM readings WHERE b = ANY(?) AND t = ANY(?)")) {
                for (int round = 0; round < 6; round++) {
                    any.setArray(1, connection.createArrayOf("int8",
                            new Long[] {9_000_000_001L, 9_000_000_003L, 1L}));
                    any.setArray(2, connection.createArrayOf("text", new String[] {"odd", "x"}));
                    try (ResultSet rows = any.executeQuery()) {
                        check("= ANY(array) row", rows.next(), true);
                        check("= ANY(array) count", rows.getLong(1), 2L);
                    }
                }
            }

            DatabaseMetaData metadata = connection.getMetaData();
            check("product", metadata.getDatabaseProductName(), "PostgreSQL");
            check("schemas include public",
                    column(metadata.getSchemas(), "TABLE_SCHEM").contains("public"), true);
            check("tables", column(metadata.getTables(null, "public", "%", new String[] {"TABLE"}),
                    "TABLE_NAME"), List.of("accounts", "documents", "readings"));
            check("views", column(metadata.getTables(null, "public", "%", new String[] {"VIEW"}),
                    "TABLE_NAME"), List.of("positive"));
            check("materialized views", column(metadata.getTables(null, "public", "%",
                    new String[] {"MATERIALIZED VIEW"}), "TABLE_NAME"), List.of("per_text"));
            check("columns", column(metadata.getColumns(null, "public", "readings", "%"),
                    "COLUMN_NAME"),
                    List.of("i", "b", "n", "d", "t", "flag", "at", "at_utc", "day", "span"));
            check("column types", column(metadata.getColumns(null, "public", "readings", "%"),
                    "TYPE_NAME"),
                    List.of("int4", "int8", "numeric", "float8", "text", "bool", "timestamp",
                            "timestamptz", "date", "interval"));
            check("primary keys",
                    column(metadata.getPrimaryKeys(null, "public", "readings"), "COLUMN_NAME"),
                    List.of());
            check("primary key columns",
                    column(metadata.getPrimaryKeys(null, "public", "accounts"), "COLUMN_NAME"),
                    List.of("region", "id"));
            check("primary key name",
                    column(metadata.getPrimaryKeys(null, "public", "accounts"), "PK_NAME"),
                    List.of("accounts_pkey", "accounts_pkey"));
            check("unique indexes", column(metadata.getIndexInfo(null, "public", "accounts",
                    true, true), "INDEX_NAME"),
                    List.of("accounts_email_key", "accounts_pkey", "accounts_pkey"));
            check("unique index columns", column(metadata.getIndexInfo(null, "public",
                    "accounts", true, true), "COLUMN_NAME"), List.of("email", "region", "id"));
            // The rest of what DBeaver and Metabase read while they sync a schema.
            check("imported keys", column(metadata.getImportedKeys(null, "public", "readings"),
                    "FKCOLUMN_NAME"), List.of());
            check("exported keys", column(metadata.getExportedKeys(null, "public", "readings"),
                    "PKCOLUMN_NAME"), List.of());
            check("cross reference", column(metadata.getCrossReference(null, "public",
                    "readings", null, "public", "per_text"), "FKCOLUMN_NAME"), List.of());
            check("index info", column(metadata.getIndexInfo(null, "public", "readings", false,
                    true), "INDEX_NAME"), List.of());
            check("type info includes int8",
                    column(metadata.getTypeInfo(), "TYPE_NAME").contains("int8"), true);
            check("client info properties", column(metadata.getClientInfoProperties(), "NAME"),
                    List.of("ApplicationName"));
            check("max column name length", metadata.getMaxColumnNameLength(), 63);
            // {? = call f(?)} is `select * from f($1, $2) as result`, the OUT parameter bound
            // as void.
            try (CallableStatement call = connection.prepareCall("{? = call upper(?)}")) {
                call.registerOutParameter(1, Types.VARCHAR);
                call.setString(2, "abc");
                call.execute();
                check("call escape", call.getString(1), "ABC");
            }
            check("still a PGConnection",
                    connection.unwrap(PGConnection.class).getBackendPID() >= 0, true);
        }
        System.out.println("ok");
    }
}
