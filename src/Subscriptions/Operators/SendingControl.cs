using Dapper;
using Npgsql;

namespace Subscriptions.Operators;

public sealed record SendingState(bool Paused, string? ChangedBy, DateTime? ChangedAt);

/// <summary>The pause switch of <c>sending_control</c>; the delivery senders read it in their claim (Digest/DeliverySender).</summary>
internal sealed class SendingControl(NpgsqlDataSource dataSource, TimeProvider time)
{
    public async Task<SendingState> GetAsync(CancellationToken cancellationToken)
    {
        const string sql = "SELECT paused, changed_by, changed_at FROM sending_control";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<SendingState>(new CommandDefinition(sql, cancellationToken: cancellationToken));
    }

    public async Task SetAsync(bool paused, string changedBy, CancellationToken cancellationToken)
    {
        const string sql = "UPDATE sending_control SET paused = @paused, changed_by = @changedBy, changed_at = @now";
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(sql, new { paused, changedBy, now = time.GetUtcNow() }, cancellationToken: cancellationToken));
    }
}
